"""The decode loop: prefill, then sample one token per step until EOS, a stop string, the token
budget or cancellation. Runs in a worker thread; ``stream`` bridges it to an async iterator.

``Generation`` is one sequence's token side (sampling, output pipeline, ending); ``run`` drives
one alone, and ``cortex_onnx.scheduler`` drives many in a shared batch through the same class.
The cancel flag is read before every step, so a closed stream stops within one decode step.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from typing import cast

import attrs
import numpy as np
import numpy.typing as npt

from cortex.harness import Finish, GenerationEvent, HarnessError, Prefilled
from cortex_onnx.output import OutputPipeline
from cortex_onnx.sampling import SamplingParams, choose_token, make_rng
from cortex_onnx.session import Decoder, KVCache

Emit = Callable[[GenerationEvent], None]


@attrs.frozen
class Plan:
    """One generation, resolved: prompt ids, budget and when to end."""

    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    eos_token_ids: frozenset[int]
    sampling: SamplingParams


def plan_budget(prompt_tokens: int, context_length: int, max_tokens: int | None) -> int:
    """New tokens allowed: what was asked, capped by the room left in the context."""
    room = context_length - prompt_tokens
    if room < 1:
        raise HarnessError(
            f"the prompt is {prompt_tokens} tokens; the context holds {context_length}",
            code="context_length_exceeded",
        )
    if max_tokens is not None and max_tokens < 1:
        raise HarnessError("max_tokens must be at least 1")
    return room if max_tokens is None else min(max_tokens, room)


class Generation:
    """One sequence's token side: sample from its logits, feed its output pipeline, end it.

    The plain loop (``run``) and the batch scheduler both drive a sequence through ``take``, so a
    request decodes the same tokens alone or in a batch."""

    def __init__(
        self, plan: Plan, pipeline: OutputPipeline, emit: Emit, cancelled: threading.Event
    ) -> None:
        self.plan, self.pipeline, self.emit, self.cancelled = plan, pipeline, emit, cancelled
        self.rng = make_rng(plan.sampling.seed)
        self.generated = 0
        self.reason = "length"
        self.cached_tokens = 0  # prompt tokens whose KV came from the prefix cache

    def prefilled(self) -> None:
        """Announce that the prompt has been processed."""
        self.emit(Prefilled(len(self.plan.prompt_ids), cached_tokens=self.cached_tokens))

    def take(self, logits: npt.NDArray[np.floating]) -> int | None:
        """Choose the next token; return it when it must be fed to the model, or ``None`` when
        the generation has ended (its ``Finish`` is emitted)."""
        plan = self.plan
        token = choose_token(logits, plan.sampling, self.rng)
        self.generated += 1
        if token in plan.eos_token_ids:
            self.reason = "stop"
            self.finish()
            return None
        for event in self.pipeline.push(token):
            self.emit(event)
        if self.pipeline.stopped is not None or self.generated >= plan.max_new_tokens:
            self.finish()
            return None
        return token

    def finish(self) -> None:
        """Release held text and emit ``Finish``."""
        pipeline = self.pipeline
        for event in pipeline.finish():
            self.emit(event)
        if pipeline.stopped is not None:
            self.reason = "stop"
        elif pipeline.tool_calls and self.reason == "stop":
            self.reason = "tool_calls"
        prompt = len(self.plan.prompt_ids)
        stop = pipeline.stopped
        self.emit(
            Finish(self.reason, prompt, self.generated, stop, cached_tokens=self.cached_tokens)
        )


def run(
    decoder: Decoder,
    plan: Plan,
    pipeline: OutputPipeline,
    emit: Emit,
    cancelled: threading.Event,
) -> KVCache:
    """Generate one sequence alone and synchronously, calling ``emit`` for each event; ends with
    ``Finish`` unless cancelled. Returns the cache (its ``run_seconds`` feed the benchmark)."""
    cache = decoder.new_cache(len(plan.prompt_ids) + plan.max_new_tokens)
    logits = decoder.forward(cache, plan.prompt_ids)[-1]
    generation = Generation(plan, pipeline, emit, cancelled)
    generation.prefilled()
    while not cancelled.is_set():
        token = generation.take(logits)
        if token is None:
            break
        logits = decoder.forward(cache, [token])[-1]
    return cache


_DONE = object()


async def stream(
    executor: Executor,
    work: Callable[[Emit, threading.Event], object],
    cancelled: threading.Event,
) -> AsyncIterator[GenerationEvent]:
    """Run ``work(emit, cancelled)`` on ``executor`` and yield what it emits, in order.

    Closing the iterator (or cancelling its task) sets ``cancelled``; the worker sees it before
    its next step. A ``HarnessError`` in the worker is re-raised here; anything else becomes a
    500 ``HarnessError``.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def put(item: object) -> None:
        if cancelled.is_set():
            return
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            cancelled.set()

    def target() -> None:
        try:
            work(put, cancelled)
        except Exception as e:  # noqa: BLE001 - every failure must reach the stream (500)
            put(e)
        else:
            put(_DONE)

    future = loop.run_in_executor(executor, target)
    future.add_done_callback(_retrieve)
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, HarnessError):
                raise item
            if isinstance(item, Exception):
                message = f"generation failed: {type(item).__name__}: {item}"
                raise HarnessError(message, status=500, code="generation_failed") from item
            yield cast("GenerationEvent", item)
    finally:
        cancelled.set()


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a worker's outcome as seen (its errors already reached the stream)."""
    if not future.cancelled():
        future.exception()


def join_events(events: Sequence[GenerationEvent]) -> str:
    """The text of a list of events (for tests and the benchmark)."""
    return "".join(getattr(e, "text", "") for e in events)
