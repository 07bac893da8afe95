"""Benchmark: the gateway's streaming relay CPU per request with the metrics tap on and off.

Run: ``python bench/tap.py [--rounds 5] [--streams 32] [--tokens 200] [--seconds 60]``.
A child process runs a fake OpenAI SSE upstream (one frame per token, paced so each
arrives on its own, as a GPU's would) and the clients; this process runs only the
gateway's relay path (``open_upstream`` + ``relay`` + ``ClientLink``), so its CPU
time is the relay's. "on" adds ``Tap`` on every chunk and ``GatewayMetrics.finish``
plus the last-minute window per request, as ``_record`` does (not the log line).
Modes alternate per round; the medians are compared. Target: on within 15% of off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
import timeit
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
from aiohttp import web

from cortex.core.envelopes import OPENAI
from cortex.gateway.context import RequestContext
from cortex.gateway.metrics import GatewayMetrics
from cortex.gateway.proxy import ClientLink, open_upstream, relay

BODY = json.dumps({"model": "bench", "stream": True, "messages": []}).encode()


def frames(tokens: int) -> list[bytes]:
    """A neuron-shaped stream: role chunk with usage, one chunk per token, finish, [DONE]."""
    head: dict[str, Any] = {"id": "chatcmpl-0123456789abcdef", "object": "chat.completion.chunk"}
    head |= {"created": 1700000000, "model": "bench"}

    def frame(obj: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps({**head, **obj}, separators=(",", ":")).encode() + b"\n\n"

    usage = {"prompt_tokens": 120, "completion_tokens": tokens, "total_tokens": 120 + tokens}
    out = [
        frame(
            {
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                "usage": {**usage, "completion_tokens": 0, "total_tokens": 120},
            }
        )
    ]
    for i in range(tokens):
        delta = {"content": f" word{i}"}
        out.append(frame({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
    last = {"index": 0, "delta": {}, "finish_reason": "stop"}
    out.append(frame({"choices": [last], "usage": usage}))
    out.append(b"data: [DONE]\n\n")
    return out


# -- the child: fake upstream and clients -------------------------------------------


async def _child_main(conn: Connection, tokens: int, streams: int, pace_s: float) -> None:
    stream = frames(tokens)

    async def upstream(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in stream:
            await response.write(chunk)
            await asyncio.sleep(pace_s)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    conn.send(runner.addresses[0][1])
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command is None:
                break
            url, requests = command

            async def one(url: str = url) -> int:
                async with session.post(url, data=BODY) as r:
                    return len(await r.read())

            sizes: list[int] = []
            for start in range(0, requests, streams):
                batch = min(streams, requests - start)
                sizes += await asyncio.gather(*(one() for _ in range(batch)))
            conn.send(sum(sizes))
    await runner.cleanup()


def child(conn: Connection, tokens: int, streams: int, pace_s: float) -> None:
    asyncio.run(_child_main(conn, tokens, streams, pace_s))


# -- this process: the relay ----------------------------------------------------------


class Relay:
    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url
        self.metrics = GatewayMetrics()
        self.tap_on = False
        self.chunks = 0
        self.count_chunks = False
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        ctx = RequestContext(request_id="req_bench", api=OPENAI, model="bench", node="n1")
        link = ClientLink(request, OPENAI, b": keep-alive\n\n", {"x-request-id": ctx.request_id})
        body = await request.read()
        ctx.sent_at = time.perf_counter()
        upstream = await open_upstream(
            self.session,
            self.upstream_url,
            body,
            {"Content-Type": "application/json", "x-request-id": ctx.request_id},
            stream=True,
            idle_timeout_s=30,
            total_timeout_s=60,
        )
        tap: Any = None
        if self.count_chunks:

            def tap(chunk: bytes) -> None:
                self.chunks += 1

        elif self.tap_on:
            tap = self.metrics.tap(ctx)
        response = await relay(upstream, link, tap=tap)
        if self.tap_on:
            ctx.status = response.status
            done = self.metrics.finish(ctx, lambda m: True)
            self.metrics.recent.add(
                done.model,
                ok=True,
                ttft_s=done.ttft_s,
                tokens_per_second=done.tokens_per_second,
                completion_tokens=done.completion_tokens,
            )
        return response


async def main(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.seconds
    ctx = multiprocessing.get_context("spawn")
    parent, child_end = ctx.Pipe()
    proc = ctx.Process(
        target=child, args=(child_end, args.tokens, args.streams, args.pace_ms / 1e3)
    )
    proc.start()
    port = parent.recv()
    relay_state = Relay(f"http://127.0.0.1:{port}/v1/chat/completions")
    app = web.Application()
    app.router.add_post("/relay", relay_state.handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/relay"
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    relay_state.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def batch(requests: int) -> float:
        """CPU seconds this process spent relaying ``requests`` streams."""
        started = time.process_time()
        parent.send((url, requests))
        await loop.run_in_executor(None, parent.recv)
        return time.process_time() - started

    relay_state.count_chunks = True
    await batch(args.streams)  # warm-up, and how many reads the relay sees per stream
    relay_state.count_chunks = False
    chunks_per_request = relay_state.chunks / args.streams
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            relay_state.tap_on = mode == "on"
            cpu[mode].append(await batch(args.requests) / args.requests)
        if time.monotonic() > deadline:
            break
    parent.send(None)
    proc.join(timeout=10)
    await relay_state.session.close()
    await runner.cleanup()
    report(args, cpu, chunks_per_request)


def report(args: argparse.Namespace, cpu: dict[str, list[float]], chunks: float) -> None:
    off, on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    stream = frames(args.tokens)
    metrics = GatewayMetrics()

    def tap_stream() -> None:
        ctx = RequestContext(request_id="r", api=OPENAI, model="bench", node="n1")
        tap = metrics.tap(ctx)
        for chunk in stream:
            tap(chunk)

    def finish() -> None:
        ctx = RequestContext(request_id="r", api=OPENAI, model="bench", node="n1", status=200)
        tap = metrics.tap(ctx)
        tap(stream[0])
        tap(stream[1])
        tap(stream[-2])
        metrics.finish(ctx, lambda m: True)

    tap_s = min(timeit.repeat(tap_stream, number=20, repeat=5)) / 20 / len(stream)
    finish_s = min(timeit.repeat(finish, number=200, repeat=5)) / 200
    print(
        f"relay CPU per streamed request: {args.tokens} tokens, {chunks:.0f} relay reads each, "
        f"{args.streams} concurrent, {args.rounds} rounds of {args.requests} requests per mode"
    )
    rows = [
        ("metrics", "CPU us/request (median)", "us/read", "all rounds (us/request)"),
        ("off", f"{off * 1e6:.0f}", f"{off * 1e6 / chunks:.1f}", _spread(cpu["off"])),
        ("on", f"{on * 1e6:.0f}", f"{on * 1e6 / chunks:.1f}", _spread(cpu["on"])),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"overhead: {(on / off - 1) * 100:+.1f}% (target: within +15%)")
    print(
        f"in isolation: Tap.__call__ {tap_s * 1e9:.0f} ns per chunk; "
        f"finish() {finish_s * 1e6:.1f} us per request "
        f"(= {(tap_s * chunks + finish_s) / off * 100:.1f}% of the relay's CPU per request)"
    )


def _spread(values: list[float]) -> str:
    return " ".join(f"{v * 1e6:.0f}" for v in values)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=64, help="per mode per round")
    parser.add_argument("--streams", type=int, default=32, help="concurrent streams")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--pace-ms", type=float, default=1.0, help="upstream pause per frame")
    parser.add_argument("--seconds", type=float, default=90, help="stop starting rounds after")
    asyncio.run(main(parser.parse_args()))
