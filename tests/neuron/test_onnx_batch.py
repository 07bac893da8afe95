"""Batched decoding and prefix reuse on the tiny model: same outputs as alone, bounded cache."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
from cortex_onnx.engine import Generation, Plan, run
from cortex_onnx.output import OutputPipeline
from cortex_onnx.prefix import PrefixCache
from cortex_onnx.sampling import SamplingParams
from cortex_onnx.scheduler import Job, Scheduler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cortex.harness import Finish, GenerationRequest, Prefilled, TextDelta
from tests.neuron.onnxtiny import collect, load, text_of
from tests.neuron.test_onnx_layouts import genai_folder

PROMPTS = [
    "def fibonacci(n):",
    "The quick brown fox",
    "Hello",
    "Once upon a time, in a land far away, there lived a programmer who",
    "import os\nimport sys\n\n",
]
MODEL: dict[str, Any] = {}


def tiny() -> Any:
    """The tiny model, loaded once for this module's synchronous tests."""
    if "model" not in MODEL:
        MODEL["model"] = asyncio.run(load(prefix_cache_mb=0))
    return MODEL["model"]


Spec = tuple[int, int, str, float, int, int]  # prompt, max_tokens, stop, temperature, seed, join


def make_generation(model: Any, spec: Spec, events: list[Any]) -> Generation:
    prompt, max_tokens, stop, temperature, seed, _ = spec
    ids = model.prompter.encode(None, None, PROMPTS[prompt])
    sampling = SamplingParams(temperature=temperature, seed=seed)
    plan = Plan(tuple(ids), max_tokens, model.prompter.eos_token_ids, sampling)
    pipeline = OutputPipeline(model.prompter.decode, (stop,) if stop else ())
    return Generation(plan, pipeline, events.append, threading.Event())


def alone(model: Any, spec: Spec) -> list[Any]:
    """Events of one request through the plain single-sequence loop."""
    events: list[Any] = []
    gen = make_generation(model, spec, events)
    run(model.decoder, gen.plan, gen.pipeline, events.append, gen.cancelled)
    return events


def batched(model: Any, specs: list[Spec], prefix: PrefixCache | None = None) -> list[list[Any]]:
    """Events of each request, driving a scheduler step by step; request i joins at its step."""
    scheduler = Scheduler(model.decoder, 8, prefix or PrefixCache(0))
    outputs: list[list[Any]] = [[] for _ in specs]
    jobs = [Job(make_generation(model, s, out)) for s, out in zip(specs, outputs, strict=True)]
    step = 0
    while not all(j.done.is_set() for j in jobs):
        scheduler.step_once([j for j, s in zip(jobs, specs, strict=True) if s[5] == step])
        step += 1
    return outputs


specs = st.lists(
    st.tuples(
        st.integers(0, len(PROMPTS) - 1),
        st.integers(1, 24),
        st.sampled_from(["", "e", " th", "\n", "(n"]),
        st.sampled_from([0.0, 0.0, 1.3]),
        st.integers(0, 3),
        st.integers(0, 12),
    ),
    min_size=2,
    max_size=6,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_batched_requests_equal_their_solo_runs(batch: list[Spec]) -> None:
    """Requests joining and leaving a shared batch emit exactly what each emits alone."""
    model = tiny()
    assert batched(model, batch) == [alone(model, spec) for spec in batch]


def test_rows_share_steps_and_leave_when_done() -> None:
    """Overlapping requests run in one step each time; a finished row leaves the batch."""
    model = tiny()
    scheduler = Scheduler(model.decoder, 8, PrefixCache(0))
    outs: list[list[Any]] = [[], [], []]
    spec: list[Spec] = [(0, 5, "", 0.0, 0, 0), (1, 12, "", 0.0, 0, 0), (3, 12, "", 0.0, 0, 0)]
    jobs = [Job(make_generation(model, s, o)) for s, o in zip(spec, outs, strict=True)]
    scheduler.step_once(jobs)
    assert len(scheduler.batch.rows) == 3
    while len(scheduler.batch.rows) == 3:
        scheduler.step_once([])
    assert jobs[0].done.is_set() and not jobs[1].done.is_set()
    assert scheduler.steps == 4  # the first token comes from prefill, four more from steps
    while scheduler.batch.rows:
        scheduler.step_once([])
    assert scheduler.steps == 11


async def test_concurrent_streams_with_seeds_match_their_solo_streams() -> None:
    """Concurrent generate() calls, greedy and seeded, give the same events as one at a time."""
    model = await load(prefix_cache_mb=0, max_batch=4)
    requests = [
        GenerationRequest(prompt=PROMPTS[0], temperature=0, max_tokens=30),
        GenerationRequest(prompt=PROMPTS[3], temperature=1.1, seed=7, max_tokens=20),
        GenerationRequest(prompt=PROMPTS[1], temperature=0.8, top_k=20, seed=1, max_tokens=25),
        GenerationRequest(prompt=PROMPTS[2], temperature=0, max_tokens=9, stop=("e",)),
        GenerationRequest(prompt=PROMPTS[4], temperature=1.0, top_p=0.9, seed=3, max_tokens=12),
    ]

    async def events(request: GenerationRequest) -> list[Any]:
        return [e async for e in model.generate(request)]

    solo = [await events(r) for r in requests]
    together = await asyncio.gather(*(events(r) for r in requests))
    await model.unload()
    assert together == solo


async def test_a_closed_stream_leaves_the_batch_and_the_others_continue() -> None:
    """Closing one stream in a batch frees its row within a step; the others are undisturbed."""
    model = await load(prefix_cache_mb=0, max_batch=3)
    scheduler = model.scheduler
    keep = [
        GenerationRequest(prompt=PROMPTS[0], temperature=0, max_tokens=60),
        GenerationRequest(prompt=PROMPTS[1], temperature=0.9, seed=5, max_tokens=60),
    ]
    solo = [text_of(await collect(model, **_fields(r))) for r in keep]
    victim = model.generate(GenerationRequest(prompt=PROMPTS[3], temperature=0, max_tokens=2000))
    others = [asyncio.create_task(collect(model, **_fields(r))) for r in keep]
    seen = 0
    async for event in victim:
        seen += isinstance(event, TextDelta)
        if seen == 3:
            break
    await victim.aclose()
    closed_at = scheduler.steps
    late = await collect(model, prompt=PROMPTS[2], temperature=0, max_tokens=5)  # needs a row
    results = await asyncio.gather(*others)
    assert [text_of(r) for r in results] == solo
    assert isinstance(late[-1], Finish) and late[-1].completion_tokens == 5
    assert scheduler.steps - closed_at < 60  # the 2000-token victim stopped early
    await model.unload()
    assert not scheduler.batch.rows


def _fields(request: GenerationRequest) -> dict[str, Any]:
    keys = ("prompt", "temperature", "seed", "max_tokens")
    return {k: getattr(request, k) for k in keys}


CHAT = [
    {"role": "system", "content": "You are a terse assistant. " * 12},
    {"role": "user", "content": "Summarise the history of the printing press. " * 8},
]


async def turns(model: Any) -> tuple[list[Any], list[Any]]:
    """A first turn, then a second turn that resends the first with the answer appended."""
    first = await collect(model, messages=CHAT, temperature=0, max_tokens=12)
    history = [
        *CHAT,
        {"role": "assistant", "content": text_of(first)},
        {"role": "user", "content": "And then?"},
    ]
    second = await collect(model, messages=history, temperature=0, max_tokens=12)
    return first, second


async def test_prefix_reuse_gives_the_same_tokens_and_reports_cached_tokens() -> None:
    """A resent conversation reuses its cached KV, reports it, and decodes what a cold run does."""
    cold = await load(prefix_cache_mb=0)
    expected = await turns(cold)
    await cold.unload()
    warm = await load(prefix_cache_mb=16)
    got = await turns(warm)
    await warm.unload()
    assert [text_of(e) for e in got] == [text_of(e) for e in expected]
    first, second = got
    assert isinstance(first[-1], Finish) and first[-1].cached_tokens == 0
    assert isinstance(second[-1], Finish)
    cached, prompt = second[-1].cached_tokens, second[-1].prompt_tokens
    assert first[-1].prompt_tokens <= cached < prompt
    assert Prefilled(prompt, cached) in second


async def test_prefix_reuse_on_the_genai_layout(tmp_path: Path) -> None:
    """The shared-buffer layout reuses prefixes too, with the same tokens as a cold run."""
    folder = genai_folder(tmp_path / "genai")
    cold = await load(folder, provider="cpu", prefix_cache_mb=0)
    expected = await turns(cold)
    await cold.unload()
    warm = await load(folder, provider="cpu", prefix_cache_mb=16)
    got = await turns(warm)
    together = await asyncio.gather(
        collect(warm, prompt=PROMPTS[0], temperature=0, max_tokens=10),
        collect(warm, prompt=PROMPTS[3], temperature=0, max_tokens=10),
    )
    await warm.unload()
    assert [text_of(e) for e in got] == [text_of(e) for e in expected]
    assert isinstance(got[1][-1], Finish) and got[1][-1].cached_tokens > 0
    assert all(isinstance(e[-1], Finish) for e in together)


def kv(tokens: int, width: int = 8) -> tuple[np.ndarray, ...]:
    """Two fake KV ports for ``tokens`` tokens (``width`` float32 per token each)."""
    return tuple(np.full((1, 1, tokens, width), tokens, dtype=np.float32) for _ in range(2))


@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=12), max_size=40))
def test_the_prefix_cache_stays_within_its_bound_and_evicts_the_oldest(
    sequences: list[list[int]],
) -> None:
    """Accounted bytes never pass the bound and always equal what is held; LRU goes first."""
    limit = 2000
    cache = PrefixCache(limit)
    order: list[tuple[int, ...]] = []
    for ids in sequences:
        key = tuple(ids)
        stored = cache.insert(ids, kv(len(ids)))
        if stored:
            order = [k for k in order if key[: len(k)] != k] + [key]
        elif any(k[: len(key)] == key for k in order):
            covering = next(k for k in order if k[: len(key)] == key)
            order = [k for k in order if k != covering] + [covering]
        evicted = [k for k in order if k not in cache.sequences()]
        assert order[: len(evicted)] == evicted  # the least recently used go first
        assert cache.sequences() == order[len(evicted) :]
        order = cache.sequences()
        assert cache.nbytes <= limit
        assert cache.nbytes == sum(64 * len(k) for k in cache.sequences())


def test_lookup_finds_the_longest_common_prefix_and_refreshes_it() -> None:
    """Lookup returns the longest shared prefix (one token short of a full match) and makes that
    entry the most recently used."""
    cache = PrefixCache(10_000)
    cache.insert([1, 2, 3, 4], kv(4))
    cache.insert([1, 2, 9], kv(3))
    cache.insert([7, 7], kv(2))
    n, arrays = cache.lookup([1, 2, 3, 5, 6])
    assert n == 3 and arrays[0].shape == (1, 1, 3, 8) and float(arrays[0][0, 0, 0, 0]) == 4
    assert cache.sequences()[-1] == (1, 2, 3, 4)
    assert cache.lookup([1, 2, 3, 4])[0] == 3  # at least one token is left to run
    assert cache.lookup([5, 1])[0] == 0
    cache.insert([8] * 152, kv(152))  # 9728 bytes: the two least recently used go
    assert cache.sequences() == [(1, 2, 3, 4), (8,) * 152]
    assert not cache.insert([9] * 200, kv(200))  # larger than the whole budget
