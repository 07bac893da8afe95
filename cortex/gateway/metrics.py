"""The gateway's Prometheus series (SPEC section 6) and the stream tap that feeds them.

The tap reads the relayed bytes without changing, copying or parsing them: the
first chunk that carries a token ends time to first token, a byte count of data
frames tracks what was delivered, and the chunk that last mentioned ``usage`` is
kept by reference and parsed once, when the request ends. Time to first token
runs from request arrival and is split into queue, load and prefill (everything
after the waits until the neuron's first token byte: routing, the hop, the
neuron's own prefill); every request that got a first token observes all four,
parts zero when it did not wait, so the parts' sums add up to the whole's.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cortex.gateway.context import RequestContext
from cortex.gateway.recent import RecentStats

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
TPS_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200)

_USAGE = b'"usage":'
_FRAME = b'data: {"'  # a JSON data frame; content text escapes its quotes, so never inside one
USAGE_SPAN = 1024  # a usage object is far shorter: chunks kept after its mark, in bytes
# The first chunk that carries generated text or a tool call (the role chunk does not).
_TOKEN_MARKS = (b'"content":"', b'"text":"', b'"tool_calls":')
_DECODER = json.JSONDecoder()
MAX_CHILDREN = 4096  # cached label children; past it the cache starts over
FOLD_EVERY = 256  # finished requests kept before they are folded into the series
# Unloads the gateway decides on its own count as evictions; an operator's do not.
NOT_EVICTIONS = frozenset({"admin"})


def has_token(chunk: bytes) -> bool:
    for mark in _TOKEN_MARKS:
        at = chunk.find(mark)
        while at >= 0:
            after = chunk[at + len(mark) : at + len(mark) + 1]
            if mark == b'"tool_calls":' or after not in (b'"', b""):
                return True
            at = chunk.find(mark, at + 1)
    return False


def parse_usage(data: bytes) -> dict[str, Any] | None:
    """The last ``"usage": {...}`` object in ``data``, or None."""
    at = data.rfind(_USAGE)
    if at < 0:
        return None
    text = data[at + len(_USAGE) : at + len(_USAGE) + USAGE_SPAN].decode("utf-8", "replace")
    try:
        usage, _ = _DECODER.raw_decode(text.lstrip())
    except ValueError:
        return None
    return usage if isinstance(usage, dict) else None


class Tap:
    """Watches one relayed stream for the context: first token, frames, usage bytes."""

    __slots__ = ("_after", "_ctx")

    def __init__(self, ctx: RequestContext) -> None:
        self._ctx = ctx
        self._after = USAGE_SPAN  # bytes seen since the last usage mark

    def __call__(self, chunk: bytes) -> None:
        ctx = self._ctx
        ctx.last_at = now = time.perf_counter()
        if ctx.first_at is not None:
            ctx.delivered += chunk.count(_FRAME)
        elif has_token(chunk):
            ctx.first_at = now
            ctx.delivered += chunk.count(_FRAME)
        if _USAGE in chunk:
            ctx.usage_chunks = [chunk]
            self._after = len(chunk) - chunk.rfind(_USAGE)
        elif self._after < USAGE_SPAN:  # the usage object may end in this chunk
            ctx.usage_chunks.append(chunk)
            self._after += len(chunk)


class Outcome(NamedTuple):
    """What one request amounted to: the figures its metrics and log line share
    (a tuple: built once per request, several times cheaper than an attrs class)."""

    model: str  # the metrics label: "" for a name the fleet does not know
    node: str
    api: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    queue_s: float
    load_s: float
    prefill_s: float | None
    ttft_s: float | None
    duration_s: float
    tokens_per_second: float | None
    cold_start: bool


class _Fold:
    """A collector with no series of its own: reading the registry calls it first,
    so the requests recorded since the last read are folded in before any series
    is collected."""

    def __init__(self, fold: Callable[[], None]) -> None:
        self._fold = fold

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        self._fold()
        return []


def _histogram(name: str, doc: str, labels: list[str], buckets: tuple[float, ...], r: Any) -> Any:
    return Histogram(name, doc, labels, buckets=buckets, registry=r)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self._unfolded: list[Outcome] = []  # finished requests not yet in the series
        r.register(_Fold(self._fold))  # first: collected before every series
        mn = ["model", "node"]
        self.requests = Counter(
            "cortex_requests", "Requests by outcome", [*mn, "api", "code"], registry=r
        )
        self.errors = Counter("cortex_request_errors", "Failed requests", [*mn, "kind"], registry=r)
        self.cold_starts = Counter(
            "cortex_cold_starts", "Requests that waited for a model load", mn, registry=r
        )
        self.evictions = Counter(
            "cortex_evictions", "Models the gateway unloaded", [*mn, "reason"], registry=r
        )
        self.defrags = Counter(
            "cortex_defrags", "Defragmenting reload cycles", ["node"], registry=r
        )
        self.prompt_tokens = Counter("cortex_prompt_tokens", "Prompt tokens", mn, registry=r)
        self.completion_tokens = Counter(
            "cortex_completion_tokens", "Completion tokens delivered", mn, registry=r
        )
        self.duration = _histogram(
            "cortex_request_duration_seconds", "Arrival to last byte", mn, DURATION_BUCKETS, r
        )
        self.ttft = _histogram(
            "cortex_time_to_first_token_seconds", "Arrival to first token byte", mn, TTFT_BUCKETS, r
        )
        self.queue = _histogram(
            "cortex_queue_seconds", "TTFT part: waiting for an admission slot", mn, TTFT_BUCKETS, r
        )
        self.load = _histogram(
            "cortex_model_load_seconds", "TTFT part: waiting for a model load", mn, TTFT_BUCKETS, r
        )
        self.prefill = _histogram(
            "cortex_prefill_seconds",
            "TTFT part: after the waits until the neuron's first token byte",
            mn,
            TTFT_BUCKETS,
            r,
        )
        self.tps = _histogram(
            "cortex_tokens_per_second", "Decode speed after the first token", mn, TPS_BUCKETS, r
        )
        self.in_flight = Gauge("cortex_in_flight", "Requests being served", mn, registry=r)
        self.queued = Gauge(
            "cortex_queued", "Requests waiting for a slot or a load", mn, registry=r
        )
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
        self.recent = RecentStats()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def tap(self, ctx: RequestContext) -> Tap:
        return Tap(ctx)

    def observe_body(self, ctx: RequestContext, body: bytes) -> None:
        """A whole (non-streamed) answer: its arrival is the first byte."""
        ctx.first_at = ctx.last_at = time.perf_counter()
        ctx.usage = parse_usage(body) or ctx.usage

    def evicted(self, model: str, node: str, reason: str) -> None:
        self.evictions.labels(model, node, reason).inc()

    def defragged(self, node: str) -> None:
        self.defrags.labels(node).inc()

    def lifecycle_event(self, kind: str, fields: dict[str, Any]) -> None:
        """``Lifecycle.on_event``: an ``unload`` not asked for by an operator is an
        eviction, labelled with its reason (pressure, idle, defrag)."""
        if kind == "unload" and fields.get("reason") not in NOT_EVICTIONS:
            node = str(fields.get("node", ""))
            self.evicted(str(fields.get("model", "")), node, str(fields.get("reason", "")))

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: a lookup there takes a lock and checks
        every label on each call. Label values are bounded (unknown models share "")."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            if len(self._children) >= MAX_CHILDREN:
                self._children.clear()
            found = self._children[key] = metric.labels(*labels)
        return found

    def finish(self, ctx: RequestContext, known_model: Callable[[str], bool]) -> Outcome:
        """Record one request, whatever its outcome (a client gone included).

        The series take it in batches (``_fold``): a handful of locked updates per
        request cost far more one by one, between requests, than in a loop. Every read
        of the registry folds first, so a scrape or a test never sees a stale value.
        """
        if ctx.usage_chunks:
            ctx.usage = parse_usage(b"".join(ctx.usage_chunks)) or ctx.usage
        outcome = outcome_of(ctx, known_model, time.perf_counter())
        self._unfolded.append(outcome)
        if len(self._unfolded) >= FOLD_EVERY:
            self._fold()
        return outcome

    def _fold(self) -> None:
        unfolded, self._unfolded = self._unfolded, []
        groups: dict[tuple[str, str], list[Outcome]] = {}
        for outcome in unfolded:
            groups.setdefault((outcome.model, outcome.node), []).append(outcome)
        for labels, outcomes in groups.items():
            self._observe(labels, outcomes)

    def _observe(self, labels: tuple[str, str], outcomes: list[Outcome]) -> None:
        """One series' requests: counters summed, histograms filled bucket by bucket."""
        child = self._child
        for (api, code), n in Tally((o.api, str(o.status)) for o in outcomes).items():
            child(self.requests, *labels, api, code).inc(n)
        errors = Tally(error_kind(o.status) for o in outcomes if o.status >= 400)
        for kind, n in errors.items():
            child(self.errors, *labels, kind).inc(n)
        cold = sum(1 for o in outcomes if o.cold_start)
        if cold:
            child(self.cold_starts, *labels).inc(cold)
        observe_all(child(self.duration, *labels), [o.duration_s for o in outcomes])
        prompt = sum(o.prompt_tokens for o in outcomes if o.prompt_tokens > 0)
        if prompt:
            child(self.prompt_tokens, *labels).inc(prompt)
        completion = sum(o.completion_tokens for o in outcomes if o.completion_tokens > 0)
        if completion:
            child(self.completion_tokens, *labels).inc(completion)
        firsts = [o for o in outcomes if o.ttft_s is not None and o.prefill_s is not None]
        if firsts:
            observe_all(child(self.ttft, *labels), [o.ttft_s for o in firsts])
            observe_all(child(self.queue, *labels), [o.queue_s for o in firsts])
            observe_all(child(self.load, *labels), [o.load_s for o in firsts])
            observe_all(child(self.prefill, *labels), [o.prefill_s for o in firsts])
        speeds = [o.tokens_per_second for o in outcomes if o.tokens_per_second is not None]
        if speeds:
            observe_all(child(self.tps, *labels), speeds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def outcome_of(ctx: RequestContext, known_model: Callable[[str], bool], now: float) -> Outcome:
    """The request's figures; TTFT parts are clamped so that they add up to TTFT."""
    model = ctx.model if ctx.model and known_model(ctx.model) else ""
    prompt, completion = ctx.tokens()
    ttft = prefill = tps = None
    queue, load = ctx.queue_s, ctx.load_s
    if ctx.first_at is not None:
        ttft = max(0.0, ctx.first_at - ctx.arrived)
        queue = min(queue, ttft)
        load = min(load, ttft - queue)
        prefill = ttft - queue - load
        decode = (ctx.last_at or now) - ctx.first_at
        if completion > 1 and decode > 0:
            tps = (completion - 1) / decode
    return Outcome(
        model=model,
        node=ctx.node,
        api=ctx.api,
        status=ctx.status,
        prompt_tokens=prompt,
        completion_tokens=completion,
        queue_s=queue,
        load_s=load,
        prefill_s=prefill,
        ttft_s=ttft,
        duration_s=now - ctx.arrived,
        tokens_per_second=tps,
        cold_start=ctx.cold_start,
    )


def observe_all(histogram: Any, values: list[Any]) -> None:
    """``histogram.observe(v)`` for each value: the same bucket counts and sum, with one
    locked update per bucket touched instead of two per value (a child's buckets are
    prometheus_client's own attributes; without them, one ``observe`` each)."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    # observe() counts a value in the first bucket whose bound is >= it: bisect_left.
    for i, n in Tally(bisect_left(bounds, v) for v in values).items():
        buckets[i].inc(n)
    total.inc(sum(values))


def error_kind(status: int) -> str:
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
