"""The gateway's Prometheus series (SPEC section 6) and the stream tap that feeds them.

The tap reads the relayed bytes without changing or buffering them: the first
chunk's arrival ends prefill, and the last ``usage`` object gives token counts.
Time to first token is measured from request arrival and split into queue, load
and prefill; every request observes every part (zero when it did not wait).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cortex.gateway.context import RequestContext

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
TPS_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200)

_USAGE = b'"usage":'
# The first chunk that carries generated text or a tool call (the role chunk does not).
_TOKEN_MARKS = (b'"content":"', b'"text":"', b'"tool_calls":')


def has_token(chunk: bytes) -> bool:
    for mark in _TOKEN_MARKS:
        at = chunk.find(mark)
        while at >= 0:
            after = chunk[at + len(mark) : at + len(mark) + 1]
            if mark == b'"tool_calls":' or after not in (b'"', b""):
                return True
            at = chunk.find(mark, at + 1)
    return False


class Tap:
    """Watches one relayed stream for the context: first-byte time and last usage."""

    __slots__ = ("_ctx", "_pending")

    def __init__(self, ctx: RequestContext) -> None:
        self._ctx = ctx
        self._pending = b""  # a frame holding "usage" that has not ended yet

    def __call__(self, chunk: bytes) -> None:
        ctx = self._ctx
        now = time.perf_counter()
        if ctx.first_at is None and has_token(chunk):
            ctx.first_at = now
        ctx.last_at = now
        if self._pending:
            chunk = self._pending + chunk
            self._pending = b""
        elif _USAGE not in chunk:
            return
        at = chunk.rfind(_USAGE)
        start = chunk.rfind(b"data:", 0, at)
        end = chunk.find(b"\n\n", at)
        if start < 0:
            return
        if end < 0:
            self._pending = chunk[start:]
            return
        try:
            frame = json.loads(chunk[start + 5 : end])
        except ValueError:
            return
        usage = frame.get("usage") if isinstance(frame, dict) else None
        if isinstance(usage, dict):
            ctx.usage = usage


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        mn = ["model", "node"]
        self.requests = Counter(
            "cortex_requests", "Requests by outcome", [*mn, "api", "code"], registry=r
        )
        self.errors = Counter("cortex_request_errors", "Failed requests", [*mn, "kind"], registry=r)
        self.cold_starts = Counter(
            "cortex_cold_starts", "Requests that waited for a load", mn, registry=r
        )
        self.evictions = Counter(
            "cortex_evictions", "Models unloaded to make room", [*mn, "reason"], registry=r
        )
        self.defrags = Counter(
            "cortex_defrags", "Defragmenting reload cycles", ["node"], registry=r
        )
        self.prompt_tokens = Counter("cortex_prompt_tokens", "Prompt tokens", mn, registry=r)
        self.completion_tokens = Counter(
            "cortex_completion_tokens", "Completion tokens", mn, registry=r
        )
        self.duration = Histogram(
            "cortex_request_duration_seconds", "Arrival to last byte", mn,
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "cortex_time_to_first_token_seconds", "Arrival to first token byte", mn,
            buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue = Histogram(
            "cortex_queue_seconds", "Time waiting for an admission slot", mn,
            buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.load = Histogram(
            "cortex_model_load_seconds", "Time waiting for a model load", mn,
            buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.prefill = Histogram(
            "cortex_prefill_seconds", "Request sent to the neuron until its first byte", mn,
            buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.tps = Histogram(
            "cortex_tokens_per_second", "Decode speed after the first token", mn,
            buckets=TPS_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("cortex_in_flight", "Requests being served", mn, registry=r)
        self.queued = Gauge("cortex_queued", "Requests waiting for a slot", mn, registry=r)
        self.model_loaded = Gauge(
            "cortex_model_loaded", "1 while loaded on the node", mn, registry=r
        )
        self.node_up = Gauge("cortex_node_up", "1 while the node is healthy", ["node"], registry=r)
        self.vram_used = Gauge(
            "cortex_device_vram_used_mb", "Device memory used", ["node", "device"], registry=r
        )
        self.vram_free = Gauge(
            "cortex_device_vram_free_mb", "Device memory free", ["node", "device"], registry=r
        )
        self.model_series: set[tuple[str, str]] = set()

    def tap(self, ctx: RequestContext) -> Tap:
        return Tap(ctx)

    def observe_body(self, ctx: RequestContext, body: bytes) -> None:
        """A whole (non-streamed) answer: its arrival is the first byte."""
        ctx.first_at = ctx.last_at = time.perf_counter()
        try:
            data = json.loads(body)
        except ValueError:
            return
        if isinstance(data, dict) and isinstance(data.get("usage"), dict):
            ctx.usage = data["usage"]

    def finish(self, ctx: RequestContext, known_model: Callable[[str], bool]) -> None:
        """Record one request, whatever its outcome (a client gone included)."""
        model = ctx.model if ctx.model and known_model(ctx.model) else ""
        node, status = ctx.node, ctx.status
        labels = (model, node)
        now = time.perf_counter()
        self.requests.labels(model, node, ctx.api, str(status)).inc()
        if status >= 400:
            self.errors.labels(*labels, _kind(status)).inc()
        if ctx.cold_start:
            self.cold_starts.labels(*labels).inc()
        self.duration.labels(*labels).observe(now - ctx.arrived)
        if ctx.first_at is None:
            return
        sent = ctx.sent_at if ctx.sent_at is not None else ctx.first_at
        self.queue.labels(*labels).observe(ctx.queue_s)
        self.load.labels(*labels).observe(ctx.load_s)
        self.prefill.labels(*labels).observe(ctx.first_at - sent)
        self.ttft.labels(*labels).observe(ctx.first_at - ctx.arrived)
        prompt, completion = ctx.tokens()
        if prompt > 0:
            self.prompt_tokens.labels(*labels).inc(prompt)
        if completion > 0:
            self.completion_tokens.labels(*labels).inc(completion)
            decode = (ctx.last_at or now) - ctx.first_at
            if completion > 1 and decode > 0:
                self.tps.labels(*labels).observe((completion - 1) / decode)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _kind(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        404: "not_found",
        413: "too_large",
        429: "queue_full",
        499: "client_gone",
        502: "upstream",
        503: "unavailable",
        504: "timeout",
    }.get(status, "internal" if status >= 500 else "client")
