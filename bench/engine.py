"""Benchmark the ONNX harness's engine: prefill, decode speed, Python overhead per step, peak RSS.

Runs the real decode loop (``cortex_onnx.engine.run``: sampling, detokenisation, stop matching)
on one model at batch 1 and prints a markdown table. The time inside ``session.run`` is read
from the KV cache's counter, so "overhead" is everything else the loop does per token.

    .venv/bin/python bench/engine.py [--model PATH ...] [--provider cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "harnesses")]

from cortex_onnx.engine import Plan, run  # noqa: E402
from cortex_onnx.harness import load_model  # noqa: E402
from cortex_onnx.output import OutputPipeline  # noqa: E402
from cortex_onnx.sampling import SamplingParams  # noqa: E402

from cortex.harness import LoadSpec, Prefilled  # noqa: E402


def bench_model(path: str, args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"provider": args.provider}
    if args.threads:
        options["intra_op_threads"] = args.threads
    began = time.perf_counter()
    model = load_model(LoadSpec(Path(path).name, path, options=options))
    load_s = time.perf_counter() - began
    decoder, prompter = model.decoder, model.prompter
    assert decoder is not None, f"{path} is not a decoder"
    vocab = prompter.vocab_size
    prompt = tuple((i * 7919) % (vocab - 300) + 256 for i in range(args.prompt))

    prefill = []
    for _ in range(args.repeats):
        cache = decoder.new_cache(len(prompt) + 1)
        t = time.perf_counter()
        decoder.forward(cache, prompt)
        prefill.append(time.perf_counter() - t)

    decode_rates, overheads = [], []
    for _ in range(args.repeats):
        marks: dict[str, float] = {}

        def emit(event: Any, marks: dict[str, float] = marks) -> None:
            if isinstance(event, Prefilled):
                marks["prefilled"] = time.perf_counter()

        runs: list[float] = []
        inner = decoder.forward

        def timed(cache: Any, ids: Any, inner: Any = inner, runs: list[float] = runs) -> Any:
            before = cache.run_seconds
            out = inner(cache, ids)
            runs.append(cache.run_seconds - before)
            return out

        decoder.forward = timed  # type: ignore[method-assign]
        plan = Plan(prompt, args.tokens, frozenset(), SamplingParams(temperature=0))
        pipeline = OutputPipeline(prompter.decode, ())
        run(decoder, plan, pipeline, emit, threading.Event())
        done = time.perf_counter()
        decoder.forward = inner  # type: ignore[method-assign]
        steps = args.tokens  # tokens sampled after prefill; forward calls = tokens - 1
        decode_s = done - marks["prefilled"]
        decode_rates.append(steps / decode_s)
        overheads.append((decode_s - sum(runs[1:])) / steps)
    row = {
        "model": Path(path).name,
        "provider": model.provider,
        "threads": decoder.session.get_session_options().intra_op_num_threads,
        "load_s": load_s,
        "prefill_ms": statistics.median(prefill) * 1000,
        "decode_tok_s": statistics.median(decode_rates),
        "overhead_ms": statistics.median(overheads) * 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    import asyncio

    asyncio.run(model.unload())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model folder (repeatable)")
    parser.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: default)")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens")
    parser.add_argument("--tokens", type=int, default=128, help="decoded tokens per run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    models = [str(ROOT / "models" / "tiny-chat")] + (args.model or [])
    rows = [bench_model(path, args) for path in models]
    print(
        f"prefill: {args.prompt}-token prompt; decode: {args.tokens} tokens greedy, batch 1; "
        f"medians of {args.repeats}; peak RSS is the process's, cumulative\n"
    )
    print(
        "| model | provider | threads | load s | prefill ms | decode tok/s "
        "| overhead ms/step | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['provider']} | {r['threads']} | {r['load_s']:.2f} "
            f"| {r['prefill_ms']:.2f} | {r['decode_tok_s']:.0f} | {r['overhead_ms']:.3f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
