"""The ``genai`` harness: onnxruntime-genai runs the model, KV cache and search; cortex_onnx's
prompter tokenises (genai's tokenizer mangles some GGUF-derived vocabularies) and its output
pipeline detokenises, cuts stop strings and parses tool calls.

Needs a genai-layout folder (``genai_config.json``; ``cortex.export.llama_onnx`` can write one).
Nothing heavy is imported until ``load``.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from cortex.harness import (
    Finish,
    GenerationEvent,
    GenerationRequest,
    HarnessError,
    LoadSpec,
    Prefilled,
    Tokenized,
)

if TYPE_CHECKING:
    from cortex_onnx.engine import Emit
    from cortex_onnx.prompt import Prompter

INSTALL = (
    "the genai harness needs onnxruntime-genai: pip install onnxruntime-genai "
    "(or onnxruntime-genai-cuda on a CUDA host, without the CPU onnxruntime beside it)"
)


def import_genai() -> Any:
    """The ``onnxruntime_genai`` module, or a ``HarnessError`` saying what to install."""
    import importlib

    try:
        return importlib.import_module("onnxruntime_genai")
    except ImportError:
        raise HarnessError(INSTALL, status=500, code="harness_unavailable") from None


class GenaiHarness:
    """Entry point ``genai``: onnxruntime-genai's generator loop, one generator per request."""

    name = "genai"

    def __init__(self) -> None:
        from cortex_onnx import OnnxHarness  # light: its heavy imports wait for use

        self._tokens = OnnxHarness()  # same folder format: reuse its cached prompters

    def providers(self) -> list[str]:
        """Providers onnxruntime-genai can use here; [] when it is not installed."""
        try:
            og = import_genai()
        except HarnessError:
            return []
        return ["CPUExecutionProvider"] + (["CUDAExecutionProvider"] * og.is_cuda_available())

    async def load(self, spec: LoadSpec) -> GenaiModel:
        """Read the folder and create the genai model; a ``HarnessError`` says what is wrong."""
        return await asyncio.to_thread(GenaiModel, spec)

    async def count_tokens(
        self,
        spec: LoadSpec,
        messages: Sequence[Mapping[str, Any]] | None,
        tools: Sequence[Mapping[str, Any]] | None,
        prompt: str | None,
    ) -> int:
        """Prompt tokens with the folder's tokenizer and template; the model is not loaded."""
        return await self._tokens.count_tokens(spec, messages, tools, prompt)


class GenaiModel:
    """A resident genai model; each generation runs its own generator on a worker thread."""

    def __init__(self, spec: LoadSpec) -> None:
        from cortex_onnx.folder import bad, read_folder
        from cortex_onnx.prompt import Prompter

        og = import_genai()
        folder = read_folder(spec.source_path)
        if folder.genai_config is None:
            raise bad(f"{folder.path} has no genai_config.json; the genai harness needs one")
        self.model_id = spec.model_id
        self.prompter: Prompter = Prompter(folder)
        config = og.Config(folder.path)
        config.clear_providers()
        wanted = str(spec.options.get("provider") or "cpu").lower()
        if wanted == "cuda":
            config.append_provider("cuda")
        self.provider = "CUDAExecutionProvider" if wanted == "cuda" else "CPUExecutionProvider"
        try:
            self.model: Any = og.Model(config)
        except Exception as e:  # noqa: BLE001 - genai's load errors are untyped
            raise bad(f"onnxruntime-genai cannot load {folder.path}: {e}") from None
        self.og = og
        self.context_length = folder.context_length
        self.max_batch = max(1, int(spec.options.get("max_batch") or 1))
        self.vram_used_mb = math.ceil(folder.weights_bytes() / 2**20)
        self._executor = ThreadPoolExecutor(self.max_batch + 1, thread_name_prefix="genai")
        self._active: set[threading.Event] = set()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Stream events for ``request``; closing the iterator stops the generator."""
        from cortex_onnx.engine import stream

        if self.model is None:
            raise HarnessError(f"model {self.model_id} has been unloaded", 409, "model_unloaded")
        cancelled = threading.Event()
        self._active.add(cancelled)
        try:
            async for event in stream(self._executor, self._work(request), cancelled):
                yield event
        finally:
            self._active.discard(cancelled)

    def _work(self, r: GenerationRequest) -> Any:
        def work(emit: Emit, cancelled: threading.Event) -> None:
            from cortex_onnx.engine import plan_budget
            from cortex_onnx.output import OutputPipeline

            tools = None if r.tool_choice == "none" else r.tools
            ids = self.prompter.encode(r.messages, tools, r.prompt if r.messages is None else None)
            emit(Tokenized(len(ids)))
            budget = plan_budget(len(ids), self.context_length, r.max_tokens)
            pipeline = OutputPipeline(self.prompter.decode, r.stop)
            self._run(ids, budget, r, pipeline=pipeline, emit=emit, cancelled=cancelled)

        return work

    def _run(
        self,
        ids: list[int],
        budget: int,
        r: GenerationRequest,
        *,
        pipeline: Any,
        emit: Emit,
        cancelled: threading.Event,
    ) -> None:
        params = self.og.GeneratorParams(self.model)
        search: dict[str, Any] = {"max_length": len(ids) + budget, "do_sample": r.temperature > 0}
        if r.temperature > 0:
            search |= {"temperature": r.temperature, "top_p": r.top_p, "top_k": r.top_k or 0}
            if r.seed is not None:
                search["random_seed"] = r.seed
        params.set_search_options(**search)
        generator = self.og.Generator(self.model, params)
        generator.append_tokens(ids)
        emit(Prefilled(len(ids)))
        generated, reason = 0, "length"
        while generated < budget and not cancelled.is_set():
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            generated += 1
            if token in self.prompter.eos_token_ids:
                reason = "stop"
                break
            for event in pipeline.push(token):
                emit(event)
            if pipeline.stopped is not None:
                break
            if generator.is_done():
                break
        if cancelled.is_set():
            return
        for event in pipeline.finish():
            emit(event)
        if pipeline.stopped is not None:
            reason = "stop"
        elif pipeline.tool_calls and reason == "stop":
            reason = "tool_calls"
        emit(Finish(reason, len(ids), generated, stop_sequence=pipeline.stopped))

    async def count_tokens(
        self,
        messages: Sequence[Mapping[str, Any]] | None,
        tools: Sequence[Mapping[str, Any]] | None,
        prompt: str | None,
    ) -> int:
        """Exact prompt tokens, as ``generate`` would see them."""
        return len(await asyncio.to_thread(self.prompter.encode, messages, tools, prompt))

    async def embed(self, inputs: Sequence[str]) -> list[list[float]]:
        """Always a 400: genai models here are decoders."""
        raise HarnessError(f"model {self.model_id} is not an embedding model")

    async def unload(self) -> None:
        """Stop running generations, wait for their threads, drop the model."""
        for flag in list(self._active):
            flag.set()
        await asyncio.to_thread(self._executor.shutdown, True)
        self.model = None
