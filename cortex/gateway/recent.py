"""The last minute of requests per model, in memory, for ``cortex status`` (GET /admin/stats).

No I/O but the route. Bounded: one deque per model label (the metrics' labels, so
unknown names share ``""``), each at most ``MAX_PER_MODEL`` long; entries older
than the window drop out as requests arrive and whenever it is read.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from aiohttp import web

WINDOW_S = 60.0
MAX_PER_MODEL = 4096  # at 68 req/s per model the window's oldest are dropped early


class Sample(NamedTuple):  # one per request: a tuple is the cheapest frozen value
    at: float
    ok: bool
    ttft_s: float | None
    tokens_per_second: float | None
    completion_tokens: int


class RecentStats:
    def __init__(
        self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.clock = clock
        self._by_model: dict[str, deque[Sample]] = {}

    def add(
        self,
        model: str,
        *,
        ok: bool,
        ttft_s: float | None,
        tokens_per_second: float | None,
        completion_tokens: int,
    ) -> None:
        now = self.clock()
        samples = self._by_model.get(model)
        if samples is None:
            samples = self._by_model[model] = deque(maxlen=MAX_PER_MODEL)
        samples.append(Sample(now, ok, ttft_s, tokens_per_second, completion_tokens))
        self._trim(samples, now)

    def _trim(self, samples: deque[Sample], now: float) -> None:
        while samples and samples[0].at < now - self.window_s:
            samples.popleft()

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per model label: requests, errors, TTFT p50, decode tok/s p50, tokens/s."""
        now = self.clock()
        out: dict[str, dict[str, Any]] = {}
        for model, samples in list(self._by_model.items()):
            self._trim(samples, now)
            if not samples:
                del self._by_model[model]
                continue
            ttfts = [s.ttft_s for s in samples if s.ttft_s is not None]
            speeds = [s.tokens_per_second for s in samples if s.tokens_per_second is not None]
            out[model] = {
                "requests": len(samples),
                "errors": sum(1 for s in samples if not s.ok),
                "ttft_p50_s": round(statistics.median(ttfts), 4) if ttfts else None,
                "decode_tokens_per_second_p50": (
                    round(statistics.median(speeds), 2) if speeds else None
                ),
                "completion_tokens_per_second": round(
                    sum(s.completion_tokens for s in samples) / self.window_s, 2
                ),
            }
        return out


def stats_route(recent: RecentStats) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /admin/stats: ``{"window_s": 60, "models": {model: {...}}}``."""

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"window_s": recent.window_s, "models": recent.summary()})

    return stats
