"""Benchmark the ONNX harness's engine: prefill, decode speed, Python overhead per step, peak RSS;
batching (aggregate tok/s of 4 concurrent requests vs 1) and prefix reuse (second-turn TTFT).

Runs the real decode loop (``cortex_onnx.engine.run``: sampling, detokenisation, stop matching)
on one model at batch 1 and prints a markdown table. The time inside ``session.run`` is read
from the KV cache's counter, so "overhead" is everything else the loop does per token. With
``--batch`` and ``--prefix`` it also drives ``OnnxModel.generate`` (the scheduler) for each
``--model`` (see ``bench/serving.py``); ``--make PATH`` writes a random SmolLM2-135M-shaped model.

    .venv/bin/python bench/engine.py [--model PATH ...] [--provider cpu|cuda] [--threads N]
        [--batch] [--prefix] [--genai PATH]
    .venv/bin/python bench/engine.py --make /tmp/smol135-random [--layout genai]
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

sys.path.insert(0, str(ROOT / "bench"))
import serving  # noqa: E402


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
    parser.add_argument("--batch", action="store_true", help="also 4 concurrent vs 1 request")
    parser.add_argument("--prefix", action="store_true", help="also second-turn TTFT")
    parser.add_argument("--words", type=int, default=16, help="prompt words for --batch")
    parser.add_argument("--history", type=int, default=1000, help="first-turn prompt tokens")
    parser.add_argument("--genai", help="a genai-layout folder: onnxruntime-genai vs ours")
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny model")
    args = parser.parse_args()
    models = ([] if args.no_tiny else [str(ROOT / "models" / "tiny-chat")]) + (args.model or [])
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
    options: dict[str, Any] = {"provider": args.provider, "intra_op_threads": args.threads}
    if args.batch:
        print(f"\nbatching: {args.tokens} greedy tokens per request, {args.words}-word prompts,")
        print("through OnnxModel.generate (the scheduler); aggregate tok/s of all requests,")
        print("end to end (prefill included) and decode only (last prefill to last finish)\n")
        print(
            "| model | e2e 1 req | e2e 4 conc | e2e speedup | decode 1 req | decode 4 conc "
            "| decode speedup | same text as alone |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for path in models:
            b = serving.bench_batch(path, options, args.words, args.tokens, args.repeats)
            print(
                f"| {Path(path).name} | {b['e2e_1']:.1f} | {b['e2e_4']:.1f} "
                f"| {b['e2e_4'] / b['e2e_1']:.2f}x | {b['decode_1']:.1f} | {b['decode_4']:.1f} "
                f"| {b['decode_4'] / b['decode_1']:.2f}x | {'yes' if b['identical'] else 'NO'} |"
            )
    if args.prefix:
        print(f"\nprefix reuse: second turn after a ~{args.history}-token first turn; TTFT of a")
        print("one-token answer (tokenise + template + prefill + first token), medians\n")
        print("| model | prompt tokens | cached tokens | TTFT cold ms | TTFT cached ms | speedup |")
        print("|---|---|---|---|---|---|")
        for path in models:
            p = serving.bench_prefix(path, options, args.history, args.repeats)
            print(
                f"| {Path(path).name} | {p['prompt_tokens']} | {p['cached_tokens_cached']} "
                f"| {p['ttft_cold_ms']:.1f} | {p['ttft_cached_ms']:.1f} | {p['speedup']:.1f}x |"
            )
    if args.genai:
        threads = args.threads or serving_threads()
        theirs = serving.bench_genai(args.genai, threads, args.prompt, args.tokens, args.repeats)
        ours = bench_model(args.genai, args)["decode_tok_s"]
        name = Path(args.genai).name
        print(f"\nsame genai-layout model ({name}), batch 1, {threads} thread(s)\n")
        print("| loop | decode tok/s |\n|---|---|")
        print(f"| onnxruntime-genai {serving.genai_version()} | {theirs:.1f} |")
        print(f"| cortex_onnx (ours) | {ours:.1f} |")
        print(f"| ratio genai / ours | {theirs / ours:.2f} |")


def serving_threads() -> int:
    from cortex_onnx.session import default_threads

    return default_threads()


if __name__ == "__main__":
    main()
