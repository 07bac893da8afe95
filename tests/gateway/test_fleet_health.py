"""Nodes leaving and rejoining: poll debounce, pinned models across a neuron restart."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
from aiohttp import web

from cortex.core.fleet import LOADED
from cortex.gateway.housekeeping import load_pinned
from cortex.neuron.app import create_app as create_neuron_app
from tests.fleet import (
    REPO,
    RunningGateway,
    RunningNeuron,
    chat,
    eventually,
    http,
    resident,
    start_gateway,
    start_neuron,
)

MODELS = '[[models]]\nid = "m"\nharness = "echo"\nvram_mb = 100\n'


def healthy(gw: RunningGateway, name: str) -> bool:
    node = gw.state.store.view.node(name)
    return node is not None and node.healthy


async def rebind(neuron: RunningNeuron) -> web.AppRunner:
    """Serve the neuron's state again on its old port: the node answers once more."""
    runner = web.AppRunner(create_neuron_app(neuron.state), handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", neuron.state.port).start()
    return runner


async def test_silent_node_leaves_routing_after_the_debounce_and_returns() -> None:
    """A node is routed to until unhealthy_after_failures polls fail, and again once it answers."""
    async with (
        start_neuron("n1", vram_mb=[1000]) as n1,
        start_neuron("n2", vram_mb=[1000]) as n2,
        start_gateway([n1, n2], MODELS, unhealthy_after_failures=2) as gw,
        http() as session,
    ):
        async with session.post(gw.url + "/admin/load", json={"model": "m", "node": "n1"}) as r:
            assert r.status == 200, await r.json()
        await n1.runner.cleanup()  # n1 stops answering
        await gw.poll()
        assert healthy(gw, "n1"), "one failed poll is not enough"
        await gw.poll()
        assert not healthy(gw, "n1")
        status, body = await chat(session, gw, "m")
        assert status == 200, body
        assert resident(n2) == {"m"}
        runner = await rebind(n1)
        try:
            await gw.poll()
            assert healthy(gw, "n1")
        finally:
            await runner.cleanup()


@attrs.define
class NeuronProcess:
    """A real ``python -m cortex neuron`` subprocess on loopback."""

    name: str
    url: str
    process: asyncio.subprocess.Process

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def neuron_process(config: Path, port: int = 0) -> AsyncIterator[NeuronProcess]:
    """Start a neuron; it is ready once it prints ``neuron ready on port N``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cortex", "neuron", "-c", str(config), "--port", str(port),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert line, "the neuron exited before it was ready"
            if line.startswith("neuron ready on port "):
                bound = int(line.split()[-1])
                break
        yield NeuronProcess("n1", f"http://127.0.0.1:{bound}", process)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


async def neuron_models(gw: RunningGateway, url: str) -> dict[str, str]:
    async with gw.state.session.get(url + "/models") as r:
        return {m["id"]: m["status"] for m in await r.json()}


async def test_pinned_model_survives_pressure_and_returns_after_its_neuron_restarts(
    tmp_path: Path,
) -> None:
    """A pinned model is loaded at start, never evicted, and reloaded on a restarted neuron."""
    config = tmp_path / "neuron.toml"
    config.write_text(
        'host = "127.0.0.1"\ndefault_harness = "echo"\n'
        f'models_dir = "{tmp_path}"\n'
        '[[simulate_devices]]\nname = "sim0"\nvram_total_mb = 1000\n'
    )
    models = (
        '[[models]]\nid = "keep"\nharness = "echo"\nvram_mb = 600\npinned_on = ["n1"]\n'
        '[[models]]\nid = "other"\nharness = "echo"\nvram_mb = 600\n'
    )

    def pinned_loaded() -> bool:
        node = gw.state.store.view.node("n1")
        entry = node.model("keep") if node is not None else None
        return entry is not None and entry.status == LOADED

    async with neuron_process(config) as first:
        async with start_gateway([first], models, unhealthy_after_failures=1) as gw:
            await eventually(pinned_loaded, "the pinned model to load at start")
            async with http() as session:
                status, body = await chat(session, gw, "other")
            assert status == 503, body  # the pinned model is never the victim
            assert "cannot be evicted" in body["error"]["message"]
            assert await neuron_models(gw, first.url) == {"keep": "loaded"}

            first.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(first.process.wait(), 30)
            await gw.poll()
            assert not healthy(gw, "n1")

            async with neuron_process(config, port=first.port) as second:
                restarted = await gw.poll()
                assert restarted == ["n1"]
                assert await neuron_models(gw, second.url) == {}
                # What the poll loop does after each sweep.
                assert load_pinned(gw.state, time.monotonic(), restarted) == (("n1", "keep"),)
                await eventually(pinned_loaded, "the pinned model to come back")
                assert await neuron_models(gw, second.url) == {"keep": "loaded"}
