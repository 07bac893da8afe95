"""A fake neuron for the gateway benchmark: the management routes the gateway polls and
calls, and an OpenAI chat route that answers from pre-encoded bytes, stream and not.

Run: ``python bench/fake_neuron.py [--port 0]``; prints ``ready PORT`` once bound.
The models in ``MODELS`` are always loaded; the name sets the stream's pace, so the
gateway's own translation cannot drop it: ``bench-d<ms>`` waits that many milliseconds
between tokens, ``bench-hold`` sends one token, then waits for ``POST /bench/release``.
A stream is ``max_tokens`` tokens long (default 64), one SSE frame per token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from aiohttp import web

MODELS = ("bench-d0", "bench-d1", "bench-d2", "bench-d5", "bench-d20", "bench-hold")
MODEL = MODELS[0]
HEAD = {"id": "chatcmpl-0123456789abcdef", "object": "chat.completion.chunk"}
HEAD |= {"created": 1700000000, "model": MODEL}


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps({**HEAD, **obj}, separators=(",", ":")).encode() + b"\n\n"


def _usage(tokens: int) -> dict[str, int]:
    return {"prompt_tokens": 42, "completion_tokens": tokens, "total_tokens": 42 + tokens}


ROLE = _frame({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
TOKENS = [
    _frame({"choices": [{"index": 0, "delta": {"content": f" word{i}"}, "finish_reason": None}]})
    for i in range(4096)
]
DONE = b"data: [DONE]\n\n"


def final(tokens: int) -> bytes:
    last = {"index": 0, "delta": {}, "finish_reason": "stop"}
    return _frame({"choices": [last], "usage": _usage(tokens)})


COMPLETION = json.dumps(
    {
        "id": "chatcmpl-0123456789abcdef",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The capital of France is Paris."},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(8),
    },
    separators=(",", ":"),
).encode()


class Neuron:
    def __init__(self) -> None:
        self.port = 0
        self.started = time.monotonic()
        self.release = asyncio.Event()

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "uptime_s": time.monotonic() - self.started,
                "instance_id": "bench",
                "devices": [{"index": 0, "vram_used_mb": 1000, "vram_free_mb": 23000}],
                "models": [{"id": m, "in_flight": 0, "queued": 0} for m in MODELS],
            }
        )

    async def discovery(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "hostname": "bench", "os": "linux", "kernel": "", "version": "bench",
                "devices": [{"index": 0, "name": "sim", "vram_total_mb": 24000}],
                "cpu": {"cores": os.cpu_count() or 1, "ram_total_mb": 1000},
                "harnesses": ["echo"], "providers": [], "instance_id": "bench",
            }
        )  # fmt: skip

    async def models(self, _: web.Request) -> web.Response:
        loaded = {"harness": "echo", "status": "loaded", "devices": [0], "vram_used_mb": 100}
        return web.json_response([{"id": m, **loaded} for m in MODELS])

    async def load(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "loaded", "model_id": MODEL, "vram_used_mb": 1000})

    async def endpoint(self, _: web.Request) -> web.Response:
        return web.json_response({"url": f"http://localhost:{self.port}"})

    async def release_streams(self, _: web.Request) -> web.Response:
        self.release.set()
        self.release = asyncio.Event()
        return web.json_response({"ok": True})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        if not body.get("stream"):
            return web.Response(body=COMPLETION, content_type="application/json")
        model = str(body.get("model", ""))
        tokens = int(body.get("max_tokens") or 64)
        hold = model == "bench-hold"
        delay = 0.0 if hold else float(model.rpartition("-d")[2] or 0) / 1000
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(ROLE)
        for i in range(tokens):
            if delay:
                await asyncio.sleep(delay)
            await response.write(TOKENS[i % len(TOKENS)])
            if i == 0 and hold:
                release = self.release
                await asyncio.wait_for(release.wait(), 120)
        await response.write(final(tokens) + DONE)
        await response.write_eof()
        return response


async def serve(port: int) -> None:
    neuron = Neuron()
    app = web.Application()
    app.router.add_get("/health", neuron.health)
    app.router.add_get("/discovery", neuron.discovery)
    app.router.add_get("/models", neuron.models)
    app.router.add_post("/models/load", neuron.load)
    app.router.add_get("/models/{tail:.+}", neuron.endpoint)
    app.router.add_post("/v1/chat/completions", neuron.chat)
    app.router.add_post("/bench/release", neuron.release_streams)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    neuron.port = runner.addresses[0][1]
    print(f"ready {neuron.port}", flush=True)
    await asyncio.Event().wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.port))
    except ImportError:
        asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
