"""The harness contract: what a neuron asks of the plugin that runs a model.

Harnesses are found through the ``cortex.harnesses`` entry-point group (see
``cortex.neuron.plugins``). A harness module must import nothing heavy at import
time; onnxruntime, numpy and friends are imported inside ``load``.

The neuron shell owns the wire: it turns the events a model yields into OpenAI
chunks, counts tokens for metrics and enforces admission. A harness only turns a
``GenerationRequest`` into a stream of ``TextDelta`` / ``ToolCall`` events that
ends with one ``Finish``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs


@attrs.frozen
class DeviceInfo:
    """One device a model may be placed on, as the neuron discovered it."""

    index: int
    name: str
    vram_total_mb: int
    kind: str = "cpu"  # "cuda" or "cpu"


@attrs.frozen
class LoadSpec:
    """What ``POST /models/load`` asked for, with the source already resolved."""

    model_id: str
    source_path: str  # absolute folder (or file) inside the neuron's models_dir
    devices: tuple[DeviceInfo, ...] = ()
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class GenerationRequest:
    """One generation, already validated by the neuron shell.

    ``messages`` is set for chat, ``prompt`` for legacy completions. Bodies are
    OpenAI dicts: unknown keys inside messages and tools ride through.
    """

    messages: Sequence[Mapping[str, Any]] | None = None
    prompt: str | None = None
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: Any = None
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    request_id: str = ""


@attrs.frozen
class TextDelta:
    """Decoded text; never ends inside a UTF-8 character."""

    text: str


@attrs.frozen
class ToolCall:
    """A complete tool call parsed from the model's output."""

    id: str
    name: str
    arguments: str  # a JSON object, as text


@attrs.frozen
class Tokenized:
    """Optional, and first when sent: the prompt's token count, known before prefill.

    The neuron holds its first stream chunk (briefly) for it, so that chunk can carry
    ``usage.prompt_tokens`` (what an Anthropic ``message_start`` reports)."""

    prompt_tokens: int


@attrs.frozen
class Prefilled:
    """Optional marker: the prompt has been processed (the neuron times prefill by it)."""

    prompt_tokens: int
    cached_tokens: int = 0


@attrs.frozen
class Finish:
    """The last event of every generation."""

    reason: str  # "stop" | "length" | "tool_calls"
    prompt_tokens: int
    completion_tokens: int
    stop_sequence: str | None = None  # the stop string that ended it, if any
    cached_tokens: int = 0


GenerationEvent = Tokenized | TextDelta | ToolCall | Prefilled | Finish


class HarnessError(Exception):
    """A harness refused a request or a load; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400, code: str = "harness_error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@runtime_checkable
class LoadedModel(Protocol):
    """A model resident in memory."""

    vram_used_mb: int
    provider: str  # the execution provider really in use, e.g. "CPUExecutionProvider"
    context_length: int
    max_batch: int  # how many generations may run at once; more wait in the neuron's queue

    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        """Yield events ending with ``Finish``. Closing the iterator cancels the work
        within one decode step."""
        ...

    async def count_tokens(
        self,
        messages: Sequence[Mapping[str, Any]] | None,
        tools: Sequence[Mapping[str, Any]] | None,
        prompt: str | None,
    ) -> int: ...

    async def embed(self, inputs: Sequence[str]) -> list[list[float]]:
        """Raise ``HarnessError`` when the model is not an embedding model."""
        ...

    async def unload(self) -> None: ...


@runtime_checkable
class Harness(Protocol):
    """The object an entry point of group ``cortex.harnesses`` resolves to (a class
    or factory called with no arguments)."""

    name: str

    def providers(self) -> list[str]:
        """Execution providers this harness can use on this host (cheap; may be [])."""
        ...

    async def load(self, spec: LoadSpec) -> LoadedModel: ...

    async def count_tokens(
        self,
        spec: LoadSpec,
        messages: Sequence[Mapping[str, Any]] | None,
        tools: Sequence[Mapping[str, Any]] | None,
        prompt: str | None,
    ) -> int:
        """Exact prompt tokens with the model's tokenizer and chat template, without
        loading the weights."""
        ...
