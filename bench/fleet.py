"""Benchmark: one poll sweep over a simulated fleet of 200 neurons, 10 of them dead.

Run: ``python bench/fleet.py [--timeout S] [--nodes N] [--dead D]``. Fake neurons are one
aiohttp app on many loopback ports answering /health, /discovery and /models at once;
half the dead ones accept the connection and never answer, half are closed ports. The
gateway's own ``poll_once`` polls them all; the claim is that a sweep with dead nodes
costs about one poll timeout (they are polled concurrently), not one per dead node.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from typing import Any

from aiohttp import web

from cortex.core.catalogue import Catalogue
from cortex.core.config import GatewayConfig, NeuronRef
from cortex.gateway.app import build_state
from cortex.gateway.poller import poll_once

DISCOVERY = {
    "hostname": "fake", "os": "linux", "kernel": "6", "version": "bench",
    "devices": [{"index": 0, "name": "sim", "vram_total_mb": 24000}],
    "cpu": {"cores": 8, "ram_total_mb": 64000}, "harnesses": ["echo"], "instance_id": "i1",
}  # fmt: skip
HEALTH = {
    "status": "ok", "uptime_s": 100.0, "instance_id": "i1",
    "devices": [{"index": 0, "vram_used_mb": 1000, "vram_free_mb": 23000}],
    "models": [{"id": "m", "in_flight": 0, "queued": 0}],
}  # fmt: skip
MODELS = [{"id": "m", "harness": "echo", "status": "loaded", "devices": [0], "vram_used_mb": 1000}]


def fake_neuron() -> web.Application:
    app = web.Application()
    for path, body in (("/discovery", DISCOVERY), ("/health", HEALTH), ("/models", MODELS)):
        app.router.add_get(path, lambda _, body=body: _answer(body))
    return app


async def _answer(body: Any) -> web.Response:
    return web.json_response(body)


def free_port() -> int:
    """A port nothing listens on (bound, then closed): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def sweep(state: Any, timeout: float) -> tuple[float, int]:
    started = time.perf_counter()
    await poll_once(state.store, state.clients, 1, timeout)
    seconds = time.perf_counter() - started
    return seconds, sum(1 for n in state.store.view.nodes if n.healthy)


async def main(nodes: int, dead: int, timeout: float) -> None:
    runner = web.AppRunner(fake_neuron(), access_log=None)
    await runner.setup()
    refs = []
    for i in range(nodes - dead):
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        refs.append(NeuronRef(f"live{i:03}", f"http://127.0.0.1:{runner.addresses[-1][1]}"))
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, read nothing, answer nothing

    hang = await asyncio.start_server(silent, "127.0.0.1", 0)
    hang_port = hang.sockets[0].getsockname()[1]
    for i in range(dead):
        port = hang_port if i % 2 == 0 else free_port()
        kind = "silent" if i % 2 == 0 else "closed"
        refs.append(NeuronRef(f"dead-{kind}{i:02}", f"http://127.0.0.1:{port}"))

    live_only = await build_state(
        GatewayConfig(neurons=tuple(refs[: nodes - dead])), Catalogue(), ""
    )
    fleet = await build_state(GatewayConfig(neurons=tuple(refs)), Catalogue(), "")
    rows = [("fleet", "nodes", "dead", "timeout s", "sweep s", "healthy after")]
    try:
        for label, state, n, d in (
            ("all live, first sweep", live_only, nodes - dead, 0),
            ("all live, steady", live_only, nodes - dead, 0),
            ("with dead, first sweep", fleet, nodes, dead),
            ("with dead, steady", fleet, nodes, dead),
        ):
            seconds, healthy = await sweep(state, timeout)
            rows.append((label, str(n), str(d), f"{timeout:g}", f"{seconds:.3f}", str(healthy)))
    finally:
        for state in (live_only, fleet):
            await state.session.close()
        for writer in held:
            writer.close()
        hang.close()
        await runner.cleanup()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(
        f"sequential polling would wait about {dead // 2 * timeout:g} s on the "
        f"{dead // 2} silent nodes alone; concurrent polling waits one timeout"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--dead", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=1.0, help="poll timeout, seconds")
    args = parser.parse_args()
    asyncio.run(main(args.nodes, args.dead, args.timeout))
