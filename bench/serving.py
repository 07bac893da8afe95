"""Serving-level benchmarks through ``OnnxModel.generate`` (the batch scheduler): aggregate tok/s
of concurrent requests vs one, second-turn time to first token cold vs prefix-cached, and decode
tok/s of onnxruntime-genai's own loop beside ours. Imported by ``bench/engine.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from cortex_onnx.harness import OnnxModel, load_model

from cortex.harness import Finish, GenerationRequest, LoadSpec, Prefilled

PROSE = (
    "the history of printing presses and movable type changed how ideas moved across "
    "europe while scribes copied manuscripts by hand in quiet monasteries for centuries"
)
WORDS = PROSE.split()


def text(words: int, salt: int = 0) -> str:
    """Deterministic filler prose of about ``words`` words."""
    return " ".join(WORDS[(i * 7 + salt) % len(WORDS)] for i in range(words))


def load(path: str, options: dict[str, Any]) -> OnnxModel:
    return load_model(LoadSpec(Path(path).name, path, options=options))


class Timed:
    """One request's outcome: its Finish, text, and when it was prefilled and ended."""

    def __init__(self) -> None:
        self.finish: Finish | None = None
        self.text = ""
        self.began = self.prefilled = self.ended = 0.0

    @property
    def wall(self) -> float:
        return self.ended - self.began


async def finish_of(model: OnnxModel, request: GenerationRequest) -> Timed:
    """Run one request and time it."""
    timed, out = Timed(), []
    timed.began = time.perf_counter()
    async for event in model.generate(request):
        out.append(getattr(event, "text", ""))
        if isinstance(event, Prefilled):
            timed.prefilled = time.perf_counter()
        if isinstance(event, Finish):
            timed.finish = event
    timed.ended, timed.text = time.perf_counter(), "".join(out)
    assert timed.finish is not None
    return timed


def bench_batch(
    path: str, options: dict[str, Any], words: int, tokens: int, repeats: int
) -> dict[str, Any]:
    """Aggregate generated tok/s at 1 and 4 concurrent greedy requests of ``tokens`` tokens:
    end to end (prefill included) and decode only (from the last prefill to the last finish,
    where every row generates a token per step)."""
    model = load(path, options | {"prefix_cache_mb": 0, "max_batch": 4})
    requests = [
        GenerationRequest(prompt=text(words, salt), temperature=0, max_tokens=tokens)
        for salt in range(4)
    ]

    async def together(batch: list[GenerationRequest]) -> tuple[float, float, list[str]]:
        began = time.perf_counter()
        done = await asyncio.gather(*(finish_of(model, r) for r in batch))
        ended = max(d.ended for d in done)
        generated = [d.finish.completion_tokens for d in done if d.finish is not None]
        assert generated == [tokens] * len(batch), "a request ended early: use another prompt"
        decode = len(batch) * (tokens - 1) / (ended - max(d.prefilled for d in done))
        return sum(generated) / (ended - began), decode, [d.text for d in done]

    async def measure() -> dict[str, Any]:
        await together(requests[:1])  # warm-up
        solo = [await together([r]) for r in requests for _ in range(max(1, repeats // 2))]
        quad = [await together(requests) for _ in range(repeats)]
        alone = [(await together([r]))[2][0] for r in requests]
        return {
            "e2e_1": statistics.median(e2e for e2e, _, _ in solo),
            "e2e_4": statistics.median(e2e for e2e, _, _ in quad),
            "decode_1": statistics.median(d for _, d, _ in solo),
            "decode_4": statistics.median(d for _, d, _ in quad),
            "identical": all(texts == alone for _, _, texts in quad),
        }

    row = asyncio.run(measure())
    asyncio.run(model.unload())
    return row


def bench_prefix(path: str, options: dict[str, Any], history: int, repeats: int) -> dict[str, Any]:
    """Second-turn TTFT (a one-token answer) after a first turn of ``history`` prompt tokens."""

    async def second_turn(model: OnnxModel, salt: int) -> tuple[float, Finish]:
        words = history * 10 // 22  # the filler runs at about 2.2 tokens per word
        chat = [{"role": "user", "content": f"{salt} " + text(words, salt)}]
        first = await finish_of(
            model, GenerationRequest(messages=chat, temperature=0, max_tokens=16)
        )
        chat += [
            {"role": "assistant", "content": first.text},
            {"role": "user", "content": "Go on."},
        ]
        second = await finish_of(
            model, GenerationRequest(messages=chat, temperature=0, max_tokens=1)
        )
        assert second.finish is not None
        return second.wall, second.finish

    row: dict[str, Any] = {}
    for label, mb in (("cold", 0), ("cached", 256)):
        model = load(path, options | {"prefix_cache_mb": mb})
        runs = [asyncio.run(second_turn(model, salt)) for salt in range(repeats)]
        asyncio.run(model.unload())
        row[f"ttft_{label}_ms"] = statistics.median(t for t, _ in runs) * 1000
        row["prompt_tokens"] = runs[-1][1].prompt_tokens
        row[f"cached_tokens_{label}"] = runs[-1][1].cached_tokens
    row["speedup"] = row["ttft_cold_ms"] / row["ttft_cached_ms"]
    return row


def bench_genai(path: str, threads: int, prompt: int, tokens: int, repeats: int) -> float:
    """onnxruntime-genai's own greedy loop on a genai-layout folder: decode tok/s at batch 1."""
    import json

    import onnxruntime_genai as og

    config = og.Config(path)
    config.clear_providers()
    session = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": session}}}))
    model = og.Model(config)
    ids = [(i * 7919) % 3700 + 256 for i in range(prompt)]
    rates = []
    for _ in range(repeats):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=prompt + tokens, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(ids)  # prefill (the first token comes with it)
        began, steps = time.perf_counter(), 0
        while not generator.is_done() and steps < tokens:
            generator.generate_next_token()
            steps += 1
        rates.append(steps / (time.perf_counter() - began))
        del generator
    return statistics.median(rates)


def genai_version() -> str:
    import onnxruntime_genai as og

    return str(og.__version__)
