"""The ``onnx`` harness: loads a model folder into an ONNX Runtime session and serves
generations, token counts and embeddings from it.

This module imports nothing heavy: onnxruntime, numpy, tokenizers and jinja2 are imported
inside ``load`` and ``count_tokens`` (through the modules they call), so a gateway or a neuron
that never loads an ONNX model never pays for them.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from cortex.harness import GenerationEvent, GenerationRequest, HarnessError, LoadSpec, Tokenized

if TYPE_CHECKING:
    from cortex_onnx.encoder import Encoder
    from cortex_onnx.engine import Emit
    from cortex_onnx.folder import ModelFolder
    from cortex_onnx.prompt import Prompter
    from cortex_onnx.scheduler import Scheduler
    from cortex_onnx.session import Decoder

PROMPTER_CACHE = 8  # tokenizers kept for count_tokens, by folder
MAX_BATCH = 8  # default options.max_batch: sequences decoding together
PREFIX_CACHE_MB = 256  # default options.prefix_cache_mb: KV of recent prompts kept for reuse


class OnnxHarness:
    """Entry point ``onnx``: ONNX Runtime with our own KV-cache decode loop."""

    name = "onnx"

    def __init__(self) -> None:
        self._prompters: dict[str, Prompter] = {}

    def providers(self) -> list[str]:
        """onnxruntime's available execution providers; [] when it is not installed."""
        try:
            import onnxruntime
        except ImportError:
            return []
        return list(onnxruntime.get_available_providers())

    async def load(self, spec: LoadSpec) -> OnnxModel:
        """Read and check the folder, create the session; a ``HarnessError`` says what is wrong."""
        return await asyncio.to_thread(load_model, spec)

    async def count_tokens(
        self,
        spec: LoadSpec,
        messages: Sequence[Mapping[str, Any]] | None,
        tools: Sequence[Mapping[str, Any]] | None,
        prompt: str | None,
    ) -> int:
        """Prompt tokens with the folder's tokenizer and template; no session is created."""
        prompter = await asyncio.to_thread(self._prompter, spec.source_path)
        return len(await asyncio.to_thread(prompter.encode, messages, tools, prompt))

    def _prompter(self, path: str) -> Prompter:
        from cortex_onnx.folder import read_folder
        from cortex_onnx.prompt import Prompter

        if path not in self._prompters:
            if len(self._prompters) >= PROMPTER_CACHE:
                self._prompters.pop(next(iter(self._prompters)))
            self._prompters[path] = Prompter(read_folder(path, need_model=False))
        return self._prompters[path]


def load_model(spec: LoadSpec) -> OnnxModel:
    """Blocking load (run it off the event loop)."""
    from cortex_onnx.encoder import Encoder, is_encoder
    from cortex_onnx.folder import read_folder
    from cortex_onnx.prompt import Prompter
    from cortex_onnx.session import Decoder, create_session, detect_layout, ports

    folder = read_folder(spec.source_path)
    prompter = Prompter(folder)
    session, provider = create_session(folder, spec.options, spec.devices)
    inputs, outputs = ports(session.get_inputs()), ports(session.get_outputs())
    if is_encoder(inputs, outputs):
        encoder = Encoder(session, prompter.tokenizer)
        return OnnxModel(spec, folder, prompter, session, provider=provider, encoder=encoder)
    decoder = Decoder(session, detect_layout(inputs, outputs, folder), provider)
    return OnnxModel(spec, folder, prompter, session, provider=provider, decoder=decoder)


class OnnxModel:
    """A resident model. Generations are tokenised on a small thread pool and decoded together
    by one scheduler thread (``options.max_batch`` at once, KV prefixes reused within
    ``options.prefix_cache_mb``)."""

    def __init__(
        self,
        spec: LoadSpec,
        folder: ModelFolder,
        prompter: Prompter,
        session: Any,
        *,
        provider: str,
        decoder: Decoder | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        self.model_id = spec.model_id
        self.provider = provider
        self.prompter = prompter
        self.session: Any = session
        self.decoder = decoder
        self.encoder = encoder
        asked = int(spec.options.get("context_length") or 0)
        self.context_length = folder.context_length  # an option may shorten it, never extend it
        if asked > 0:
            self.context_length = min(asked, folder.context_length)
        self.max_batch = max(1, int(spec.options.get("max_batch") or MAX_BATCH))
        prefix_mb = spec.options.get("prefix_cache_mb")
        self.prefix_cache_mb = PREFIX_CACHE_MB if prefix_mb is None else max(0, int(prefix_mb))
        self.vram_used_mb = self._memory_mb(folder)
        # Each waiting generation holds a worker while the scheduler decodes it.
        workers = max(int(spec.options.get("workers") or 4), self.max_batch + 2)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"onnx-{spec.model_id}")
        self._active: set[threading.Event] = set()
        self.scheduler: Scheduler | None = None
        if decoder is not None:
            from cortex_onnx.prefix import PrefixCache
            from cortex_onnx.scheduler import Scheduler

            cache = PrefixCache(self.prefix_cache_mb * 2**20)
            self.scheduler = Scheduler(decoder, self.max_batch, cache, f"onnx-{spec.model_id}")

    def _memory_mb(self, folder: ModelFolder) -> int:
        """Weights on disk, one full-context KV cache per batch row and the prefix cache."""
        kv = 0
        if self.decoder is not None:
            lay = self.decoder.layout
            width = 2 if lay.kv_dtype().itemsize == 2 else 4
            kv = 2 * lay.num_layers * lay.kv_heads * lay.head_size * self.context_length * width
        if self.decoder is None:
            return math.ceil(folder.weights_bytes() / 2**20)
        host_mb = self.prefix_cache_mb if self.provider == "CPUExecutionProvider" else 0
        return math.ceil(folder.weights_bytes() / 2**20 + kv * self.max_batch / 2**20 + host_mb)

    def _live(self) -> Any:
        if self.session is None:
            raise HarnessError(f"model {self.model_id} has been unloaded", 409, "model_unloaded")
        return self.session

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Stream events for ``request``; closing the iterator stops the decode loop."""
        from cortex_onnx.engine import stream

        self._live()
        if self.decoder is None:
            raise HarnessError(f"model {self.model_id} is an embedding model; it cannot generate")
        cancelled = threading.Event()
        self._active.add(cancelled)
        try:
            work = _Work(self, request)
            async for event in stream(self._executor, work, cancelled):
                yield event
        finally:
            self._active.discard(cancelled)

    async def count_tokens(
        self,
        messages: Sequence[Mapping[str, Any]] | None,
        tools: Sequence[Mapping[str, Any]] | None,
        prompt: str | None,
    ) -> int:
        """Exact prompt tokens, as ``generate`` would see them."""
        return len(await asyncio.to_thread(self.prompter.encode, messages, tools, prompt))

    async def embed(self, inputs: Sequence[str]) -> list[list[float]]:
        """Mean-pooled vectors; a 400 for a decoder-only model."""
        self._live()
        if self.encoder is None:
            raise HarnessError(f"model {self.model_id} is not an embedding model")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.encoder.embed, list(inputs)
        )

    async def unload(self) -> None:
        """Cancel running generations, wait for their threads, and drop the session."""
        for flag in list(self._active):
            flag.set()
        if self.scheduler is not None:
            await asyncio.to_thread(self.scheduler.close)
        await asyncio.to_thread(self._executor.shutdown, True)
        self.decoder = self.encoder = None
        self.scheduler = None
        self.session = None


class _Work:
    """One generation's blocking body, run on the model's executor."""

    def __init__(self, model: OnnxModel, request: GenerationRequest) -> None:
        self.model, self.request = model, request

    def __call__(self, emit: Emit, cancelled: threading.Event) -> None:
        from cortex_onnx.engine import Generation, Plan, plan_budget
        from cortex_onnx.output import OutputPipeline
        from cortex_onnx.sampling import SamplingParams

        model, r = self.model, self.request
        tools = None if r.tool_choice == "none" else r.tools
        ids = model.prompter.encode(r.messages, tools, r.prompt if r.messages is None else None)
        emit(Tokenized(prompt_tokens=len(ids)))
        plan = Plan(
            prompt_ids=tuple(ids),
            max_new_tokens=plan_budget(len(ids), model.context_length, r.max_tokens),
            eos_token_ids=model.prompter.eos_token_ids,
            sampling=SamplingParams(r.temperature, r.top_p, r.top_k, r.seed),
        )
        scheduler = model.scheduler
        if scheduler is None:
            raise HarnessError(f"model {model.model_id} has been unloaded", 409, "model_unloaded")
        pipeline = OutputPipeline(model.prompter.decode, r.stop)
        job = scheduler.submit(Generation(plan, pipeline, emit, cancelled))
        job.done.wait()
        if job.error is not None:
            raise job.error
