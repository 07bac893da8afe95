"""Serving one generation: admission, harness events, the OpenAI wire, metrics.

I/O: writes the HTTP response. While a streaming request waits (queue, prefill)
a keep-alive comment goes out every ``keepalive_s``; a client that leaves cancels
the handler (aiohttp handler cancellation), which closes the harness's iterator
so the decode loop stops within one step.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
from aiohttp import web

from cortex.core.envelopes import OPENAI, stream_error_frame
from cortex.errors import ApiError, UpstreamFailed
from cortex.harness import (
    Finish,
    GenerationEvent,
    GenerationRequest,
    HarnessError,
    Prefilled,
    TextDelta,
    Tokenized,
    ToolCall,
)
from cortex.neuron.chunks import KEEPALIVE, ChunkWriter
from cortex.neuron.metrics import NeuronMetrics
from cortex.neuron.registry import ModelSlot, api_error_from

log = logging.getLogger("cortex.neuron.requests")

_ADMITTED = object()  # marks the moment a queued request gets its slot


@attrs.define
class Timing:
    arrived: float
    admitted: float | None = None
    first_token: float | None = None
    finished: float | None = None
    prompt_tokens: int | None = None
    delivered: int = 0  # text deltas and tool calls produced (what a cut stream got)


async def _events(
    slot: ModelSlot, request: GenerationRequest, timing: Timing
) -> AsyncIterator[GenerationEvent | object]:
    async with slot.admit() as model:
        timing.admitted = time.perf_counter()
        yield _ADMITTED
        if request.max_tokens is not None and model.context_length:
            request = attrs.evolve(
                request, max_tokens=min(request.max_tokens, model.context_length)
            )
        events = model.generate(request)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()


class _Pump:
    """Pull the next event, letting the caller do something every ``tick`` seconds."""

    def __init__(self, events: AsyncIterator[Any], tick: float) -> None:
        self._events = events
        self._tick = tick
        self._next: asyncio.Task[Any] | None = None

    async def next(self) -> tuple[bool, Any]:
        """(True, event), or (False, None) when a tick passed with no event."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._events.__anext__())
        done, _ = await asyncio.wait({self._next}, timeout=self._tick)
        if not done:
            return False, None
        task, self._next = self._next, None
        return True, task.result()

    async def close(self) -> None:
        if self._next is not None:
            self._next.cancel()
            await asyncio.gather(self._next, return_exceptions=True)
        await self._events.aclose()  # type: ignore[attr-defined]


def _failure(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, HarnessError):
        return api_error_from(exc)
    return UpstreamFailed(f"generation failed: {type(exc).__name__}")


async def serve(
    request: web.Request,
    slot: ModelSlot,
    generation: GenerationRequest,
    *,
    chat: bool,
    stream: bool,
    include_usage: bool,
    metrics: NeuronMetrics,
    keepalive_s: float = 1.0,
) -> web.StreamResponse:
    timing = Timing(arrived=time.perf_counter())
    writer = ChunkWriter(
        completion_id=("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12),
        created=int(time.time()),
        model=slot.model_id,
        chat=chat,
    )
    texts: list[str] = []
    calls: list[ToolCall] = []
    finish: Finish | None = None
    pump = _Pump(_events(slot, generation, timing), keepalive_s)
    response: web.StreamResponse | None = None
    role_sent = False
    status = 200
    try:
        if stream:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await response.prepare(request)
        while True:
            try:
                got, event = await pump.next()
            except StopAsyncIteration:
                break
            if not got:
                if response is not None:
                    await response.write(writer.role(None) if not role_sent else KEEPALIVE)
                    role_sent = True
                continue
            if event is _ADMITTED:
                continue
            if isinstance(event, Tokenized):
                timing.prompt_tokens = event.prompt_tokens
            if response is not None and not role_sent:
                await response.write(writer.role(timing.prompt_tokens))
                role_sent = True
            if isinstance(event, (TextDelta, ToolCall, Prefilled)) and timing.first_token is None:
                timing.first_token = time.perf_counter()
            if isinstance(event, (TextDelta, ToolCall)):
                timing.delivered += 1
            if isinstance(event, TextDelta):
                if response is not None:
                    await response.write(writer.text(event))
                else:
                    texts.append(event.text)
            elif isinstance(event, ToolCall):
                if response is not None:
                    await response.write(writer.tool_call(event))
                else:
                    calls.append(event)
            elif isinstance(event, Finish):
                finish = event
                timing.finished = time.perf_counter()
        if finish is None:
            raise UpstreamFailed("the harness ended without finishing the generation")
    except (asyncio.CancelledError, ConnectionResetError):
        status = 499  # the client left
        raise
    except Exception as exc:
        error = _failure(exc)
        status = error.status
        if not isinstance(exc, (ApiError, HarnessError)):
            log.exception("generation for %s failed", slot.model_id)
        if response is None:
            raise error from None
        await response.write(stream_error_frame(error, OPENAI))
        return response
    finally:
        await pump.close()
        _record(
            metrics, slot, timing, finish, status=status, request=request, generation=generation
        )
    if response is not None:
        await response.write(writer.finish(finish, include_usage))
        await response.write_eof()
        return response
    return web.json_response(writer.body(texts, calls, finish))


def _record(
    metrics: NeuronMetrics,
    slot: ModelSlot,
    timing: Timing,
    finish: Finish | None,
    *,
    status: int,
    request: web.Request,
    generation: GenerationRequest,
) -> None:
    now = time.perf_counter()
    prefill = None
    if timing.first_token is not None and timing.admitted is not None:
        prefill = timing.first_token - timing.admitted
    prompt = finish.prompt_tokens if finish else (timing.prompt_tokens or 0)
    completion = finish.completion_tokens if finish else timing.delivered
    decode = (timing.finished or now) - (timing.first_token or now)
    metrics.generation(slot.model_id, prompt, completion, prefill, decode)
    log.info(
        "request",
        extra={
            "request_id": generation.request_id,
            "model": slot.model_id,
            "path": request.path,
            "status": status,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "queue_s": round((timing.admitted or now) - timing.arrived, 4),
            "prefill_s": None if prefill is None else round(prefill, 4),
            "duration_s": round(now - timing.arrived, 4),
            "finish_reason": finish.reason if finish else None,
        },
    )
