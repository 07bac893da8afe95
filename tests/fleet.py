"""Real neurons and gateways on 127.0.0.1:0, in the test's own event loop.

``local_fleet`` starts one or more neurons and a gateway wired to them, runs one
poll so routing sees the fleet, and tears everything down afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import aiohttp
import attrs
from aiohttp import web

from cortex.core.catalogue import Catalogue
from cortex.core.config import (
    EvictionSection,
    GatewayConfig,
    GatewaySection,
    NeuronConfig,
    NeuronRef,
    SimulatedDevice,
    parse_models,
)
from cortex.gateway.app import build_state as build_gateway_state
from cortex.gateway.app import create_app as create_gateway_app
from cortex.gateway.app import create_metrics_app
from cortex.gateway.poller import poll_once
from cortex.gateway.state import GatewayState
from cortex.neuron.app import build_state as build_neuron_state
from cortex.neuron.app import create_app as create_neuron_app
from cortex.neuron.state import NeuronState

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ECHO_MODELS = """
[[models]]
id = "echo"
harness = "echo"
aliases = ["parrot"]
vram_mb = 100
"""


class NeuronAddress(Protocol):
    """What a gateway needs to know of a neuron (in-process or a subprocess)."""

    name: str
    url: str


@attrs.define
class RunningNeuron:
    name: str
    url: str
    state: NeuronState
    runner: web.AppRunner


@attrs.define
class RunningGateway:
    url: str
    metrics_url: str
    state: GatewayState
    runners: list[web.AppRunner]

    async def poll(self) -> list[str]:
        """One poll sweep; returns the neurons that (re)appeared."""
        gateway = self.state.config.gateway
        return await poll_once(
            self.state.store, self.state.clients, gateway.unhealthy_after_failures, 2.0
        )


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def start_neuron(
    name: str = "n1",
    *,
    vram_mb: Sequence[int] = (),
    models_dir: str | None = None,
    token: str = "",
    default_harness: str = "echo",
) -> AsyncIterator[RunningNeuron]:
    config = NeuronConfig(
        port=0,
        host="127.0.0.1",
        token=token,
        default_harness=default_harness,
        models_dir=models_dir or os.path.join(REPO, "models"),
        simulate_devices=tuple(SimulatedDevice(f"sim{i}", mb) for i, mb in enumerate(vram_mb)),
    )
    state = await build_neuron_state(config, config.models_dir)
    runner, url = await _serve(create_neuron_app(state))
    state.port = runner.addresses[0][1]
    try:
        yield RunningNeuron(name, url, state, runner)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def start_gateway(
    neurons: Sequence[NeuronAddress],
    models_toml: str = ECHO_MODELS,
    *,
    eviction: EvictionSection | None = None,
    **gateway: Any,
) -> AsyncIterator[RunningGateway]:
    section = attrs.evolve(GatewaySection(), **{"poll_interval_s": 60, "keepalive_s": 1, **gateway})
    config = GatewayConfig(
        gateway=section,
        eviction=eviction or EvictionSection(),
        neurons=tuple(NeuronRef(n.name, n.url) for n in neurons),
    )
    catalogue = Catalogue(parse_models(models_toml).models)
    state = await build_gateway_state(config, catalogue, "models.toml")
    runner, url = await _serve(create_gateway_app(state))
    metrics_runner, metrics_url = await _serve(create_metrics_app(state))
    running = RunningGateway(url, metrics_url, state, [runner, metrics_runner])
    try:
        await running.poll()
        yield running
    finally:
        for r in running.runners:
            await r.cleanup()


@contextlib.asynccontextmanager
async def local_fleet(
    models_toml: str = ECHO_MODELS, vram_mb: Sequence[int] = (), **gateway: Any
) -> AsyncIterator[tuple[RunningGateway, RunningNeuron]]:
    async with start_neuron(vram_mb=vram_mb) as neuron:
        async with start_gateway([neuron], models_toml, **gateway) as gw:
            yield gw, neuron


@contextlib.asynccontextmanager
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def kill_connections(neuron: RunningNeuron) -> None:
    """Drop every open connection to the neuron, as if its process died."""
    server = neuron.runner.server
    assert server is not None
    for handler in server.connections:
        if handler.transport is not None:
            handler.transport.abort()


async def chat(
    session: aiohttp.ClientSession,
    gw: RunningGateway,
    model: str,
    text: str = "one two three",
    **extra: Any,
) -> tuple[int, Any]:
    """One non-streamed chat request through the gateway: (status, parsed body)."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    async with session.post(gw.url + "/v1/chat/completions", json=body) as r:
        return r.status, await r.json()


def load_count(neuron: RunningNeuron, model: str) -> int:
    """Real loads of ``model`` on the neuron (``neuron_model_load_seconds`` observations)."""
    registry = neuron.state.metrics.registry
    value = registry.get_sample_value("neuron_model_load_seconds_count", {"model": model})
    return int(value or 0)


def resident(neuron: RunningNeuron) -> set[str]:
    """Model ids loaded on the neuron right now."""
    return {m for m, slot in neuron.state.registry.slots.items() if slot.status == "loaded"}


def sample(gw: RunningGateway, name: str, **labels: str) -> float:
    """A gateway metric's current value (0 when the series does not exist yet)."""
    return gw.state.metrics.registry.get_sample_value(name, labels) or 0.0


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Wait, in short steps and at most ``timeout_s``, until ``check()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
