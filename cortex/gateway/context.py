"""What the gateway learns about one request as it goes: ids, placement, timings.

Filled in by the dispatcher (queue and load waits), the proxy tap (first byte,
usage) and read once at the end by metrics and the request's log line.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any

import attrs


@attrs.define
class RequestContext:
    request_id: str
    api: str
    arrived: float = attrs.field(factory=time.perf_counter)
    model: str = ""
    node: str = ""
    cold_start: bool = False
    load_s: float = 0.0
    queue_s: float = 0.0
    sent_at: float | None = None  # the request left for the neuron
    first_at: float | None = None  # the neuron's first byte arrived
    last_at: float | None = None
    usage: dict[str, Any] | None = None
    usage_chunks: list[bytes] = attrs.field(factory=list)  # kept by the tap, parsed at the end
    delivered: int = 0  # data frames relayed from the first token on
    status: int = 0
    link: Any = None  # the ClientLink once a streaming response may have started

    def tokens(self) -> tuple[int, int]:
        usage = self.usage or {}
        prompt = usage.get("prompt_tokens", usage.get("input_tokens", 0))
        completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
        completion = completion if isinstance(completion, int) else 0
        # A stream cut before its final usage: count the frames that reached the client.
        return prompt if isinstance(prompt, int) else 0, completion or self.delivered


# The middleware sets it; handlers in the same task read it (no per-request dict keys).
CURRENT: contextvars.ContextVar[RequestContext] = contextvars.ContextVar("cortex_request")
