"""Generation on the tiny model: golden ids, KV cache, sampling, endings, concurrency, unload."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from cortex.harness import Finish, HarnessError, TextDelta, ToolCall
from tests.neuron.onnxtiny import GOLDEN, TINY, collect, copy_tiny, edit_json, load, text_of

TOKENIZER = Tokenizer.from_file(str(TINY / "tokenizer.json"))
CHAT = [{"role": "user", "content": "Tell me a story."}]


def greedy_ids(decoder: Any, prompt: list[int], steps: int) -> list[int]:
    cache = decoder.new_cache(len(prompt) + steps)
    logits = decoder.forward(cache, prompt)[-1]
    out = []
    for _ in range(steps):
        out.append(int(np.argmax(logits)))
        logits = decoder.forward(cache, [out[-1]])[-1]
    return out


async def test_cached_logits_equal_a_full_forward_and_the_golden_logits() -> None:
    """Prefill plus cached steps give the logits of one full pass, and the golden top logits."""
    model = await load()
    decoder = model.decoder
    case = GOLDEN["greedy"][0]
    ids = case["prompt_ids"] + case["ids"]
    split = len(case["prompt_ids"])
    full = decoder.forward(decoder.new_cache(len(ids)), ids)
    cache = decoder.new_cache(len(ids))
    stepped = [decoder.forward(cache, ids[:split])] + [
        decoder.forward(cache, [t]) for t in ids[split:]
    ]
    assert np.abs(np.concatenate(stepped) - full).max() <= 1e-4
    last = full[split - 1]
    assert np.abs(last[case["top_ids"]] - case["top_logits"]).max() <= 1e-4
    await model.unload()


@pytest.mark.parametrize("index", range(len(GOLDEN["greedy"])))
async def test_greedy_ids_equal_the_golden_ids(index: int) -> None:
    """Greedy decoding reproduces the reference implementation's ids, and streams their text."""
    case = GOLDEN["greedy"][index]
    model = await load()
    assert greedy_ids(model.decoder, case["prompt_ids"], len(case["ids"])) == case["ids"]
    events = await collect(model, prompt=case["prompt"], temperature=0, max_tokens=len(case["ids"]))
    await model.unload()
    assert text_of(events) == TOKENIZER.decode(case["ids"])
    assert events[-1] == Finish("length", len(case["prompt_ids"]), len(case["ids"]))


async def test_same_seed_same_text_and_different_seeds_differ() -> None:
    """Sampling with a seed is reproducible; another seed gives another text."""
    model = await load()

    async def sample(seed: int) -> str:
        return text_of(
            await collect(model, messages=CHAT, temperature=1.5, seed=seed, max_tokens=24)
        )

    first, again, other = await sample(1), await sample(1), await sample(2)
    await model.unload()
    assert first == again
    assert first != other


async def test_stop_string_across_tokens_ends_generation_unemitted() -> None:
    """A stop spanning two tokens cuts the text before it and is reported as the stop."""
    model = await load()
    case = GOLDEN["greedy"][2]
    pieces = [TOKENIZER.decode([i]) for i in case["ids"]]
    at = next(i for i in range(len(pieces) - 1) if pieces[i] != pieces[i + 1])
    stop = pieces[at][-2:] + pieces[at + 1][:2]
    full = TOKENIZER.decode(case["ids"])
    events = await collect(model, prompt=case["prompt"], temperature=0, max_tokens=16, stop=(stop,))
    await model.unload()
    assert text_of(events) == full[: full.index(stop)]
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.reason, finish.stop_sequence) == ("stop", stop)
    assert finish.completion_tokens <= at + 2


def declare_eos(where: str, token: int) -> Any:
    def edit(folder: Path) -> None:
        edit_json(folder / "config.json", eos_token_id=token if where == "config" else None)
        edit_json(folder / "tokenizer_config.json", eos_token=None)
        generation = {"generation_int": token, "generation_list": [5, token]}.get(where)
        edit_json(folder / "generation_config.json", eos_token_id=generation)
        if where == "tokenizer_config":
            edit_json(folder / "tokenizer_config.json", eos_token=TOKENIZER.id_to_token(token))

    return edit


@pytest.mark.parametrize(
    "where", ["generation_int", "generation_list", "config", "tokenizer_config"]
)
async def test_eos_from_any_declaration_ends_generation(where: str, tmp_path: Path) -> None:
    """An EOS declared in any of the model's files ends generation with reason stop."""
    case = GOLDEN["greedy"][2]
    eos = case["ids"][-1]
    position = case["ids"].index(eos)
    model = await load(copy_tiny(tmp_path / "m", declare_eos(where, eos)))
    events = await collect(model, prompt=case["prompt"], temperature=0, max_tokens=16)
    await model.unload()
    assert text_of(events) == TOKENIZER.decode(case["ids"][:position])
    assert events[-1] == Finish("stop", len(case["prompt_ids"]), position + 1)


async def test_max_tokens_and_the_context_bound_the_output() -> None:
    """max_tokens ends with reason length; the context caps it; an oversized prompt is a 400."""
    model = await load(context_length=8)
    events = await collect(model, prompt="Hello", temperature=0, max_tokens=100)
    assert events[-1] == Finish("length", 3, 5)
    with pytest.raises(HarnessError, match="context holds 8") as info:
        await collect(model, prompt="The quick brown fox", max_tokens=1)
    assert info.value.status == 400
    await model.unload()
    model = await load()
    events = await collect(model, messages=CHAT, max_tokens=3, seed=0)
    await model.unload()
    assert isinstance(events[-1], Finish)
    assert (events[-1].reason, events[-1].completion_tokens) == ("length", 3)


async def test_concurrent_requests_match_their_solo_runs() -> None:
    """Two generations at once give the same outputs as each alone (no shared KV state)."""
    model = await load()
    requests: list[dict[str, Any]] = [
        {"prompt": "def fibonacci(n):", "temperature": 0, "max_tokens": 40},
        {"messages": CHAT, "temperature": 0.9, "seed": 3, "max_tokens": 40},
    ]
    solo = [text_of(await collect(model, **r)) for r in requests]
    together = await asyncio.gather(*(collect(model, **r) for r in requests))
    await model.unload()
    assert [text_of(events) for events in together] == solo


class CountingForward:
    """Wraps a decoder's forward and batch step to count model runs."""

    def __init__(self, decoder: Any) -> None:
        self.inner, self.inner_step, self.calls = decoder.forward, decoder.step, 0
        self.lock = threading.Lock()
        decoder.step = self.step

    def __call__(self, cache: Any, ids: Any) -> Any:
        with self.lock:
            self.calls += 1
        return self.inner(cache, ids)

    def step(self, *args: Any) -> Any:
        with self.lock:
            self.calls += 1
        return self.inner_step(*args)


async def test_closing_the_stream_stops_within_one_step() -> None:
    """After the consumer closes the stream, the decode loop runs at most one more step."""
    model = await load()
    counter = CountingForward(model.decoder)
    model.decoder.forward = counter
    stream = model.generate(_request(max_tokens=1500))
    seen = 0
    async for event in stream:
        seen += isinstance(event, TextDelta)
        if seen == 3:
            break
    await stream.aclose()
    steps_at_close = counter.calls
    await model.unload()  # waits for the worker thread to finish
    assert counter.calls <= steps_at_close + 1
    assert counter.calls < 100


async def test_cancelling_the_task_stops_the_decode_loop() -> None:
    """Cancelling the consuming task stops generation within one decode step."""
    model = await load()
    counter = CountingForward(model.decoder)
    model.decoder.forward = counter
    started = asyncio.Event()

    async def consume() -> None:
        async for event in model.generate(_request(max_tokens=1500)):
            if isinstance(event, TextDelta):
                started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    steps_at_cancel = counter.calls
    await model.unload()
    assert counter.calls <= steps_at_cancel + 1
    assert counter.calls < 1500


def _request(**fields: Any) -> Any:
    from cortex.harness import GenerationRequest

    return GenerationRequest(prompt="Hello", temperature=0, **fields)


async def test_unload_frees_the_session() -> None:
    """After unload the session is released and the model refuses work with a 409."""
    model = await load()
    ref = weakref.ref(model.session)
    await model.unload()
    gc.collect()
    assert ref() is None
    with pytest.raises(HarnessError) as info:
        await collect(model, prompt="Hello")
    assert info.value.status == 409


async def test_provider_memory_and_thread_options_are_reported() -> None:
    """The loaded model reports its real provider, its memory and honours intra_op_threads."""
    model = await load(intra_op_threads=1, max_batch=1, prefix_cache_mb=0)
    weights = sum(p.stat().st_size for p in TINY.glob("model.onnx*")) / 2**20
    assert model.provider == model.session.get_providers()[0]
    assert weights < model.vram_used_mb < weights + 10
    assert model.session.get_session_options().intra_op_num_threads == 1
    assert model.max_batch == 1
    await model.unload()
    model = await load(max_batch=4, prefix_cache_mb=64)
    assert model.max_batch == 4
    assert weights + 64 < model.vram_used_mb < weights + 64 + 40
    await model.unload()
    model = await load()
    assert model.max_batch == 8
    await model.unload()


async def test_embedding_a_decoder_is_a_400() -> None:
    """A decoder-only model refuses embeddings."""
    model = await load()
    with pytest.raises(HarnessError, match="not an embedding model") as info:
        await model.embed(["hi"])
    await model.unload()
    assert info.value.status == 400


class ScriptedDecoder:
    """A model double whose next token is always the next id of a script."""

    def __init__(self, script: list[int], vocab: int) -> None:
        self.script, self.vocab, self.step = script, vocab, 0

    def new_cache(self, capacity: int) -> Any:
        from cortex_onnx.session import KVCache

        return KVCache({}, capacity)

    def forward(self, cache: Any, ids: Any) -> Any:
        logits = np.zeros((len(ids), self.vocab), dtype=np.float32)
        logits[-1, self.script[min(self.step, len(self.script) - 1)]] = 1.0
        self.step += 1
        return logits


def test_a_tool_call_then_eos_finishes_with_tool_calls() -> None:
    """Output that is a tool call followed by EOS ends with reason tool_calls."""
    from cortex_onnx.engine import Plan, run
    from cortex_onnx.output import OutputPipeline
    from cortex_onnx.sampling import SamplingParams

    eos = TOKENIZER.token_to_id("<|im_end|>")
    text = 'Ok <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    script = [*TOKENIZER.encode(text).ids, eos]
    plan = Plan((1, 2), 100, frozenset({eos}), SamplingParams(temperature=0))
    events: list[Any] = []
    pipeline = OutputPipeline(lambda xs: TOKENIZER.decode(list(xs)), ())
    decoder = ScriptedDecoder(script, TOKENIZER.get_vocab_size())
    run(decoder, plan, pipeline, events.append, threading.Event())
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city": "Paris"}')]
    assert text_of(events) == "Ok "
    assert events[-1] == Finish("tool_calls", 2, len(script))
