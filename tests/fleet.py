"""Real neurons and gateways on 127.0.0.1:0, in the test's own event loop.

``local_fleet`` starts one or more neurons and a gateway wired to them, runs one
poll so routing sees the fleet, and tears everything down afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from cortex.core.catalogue import Catalogue
from cortex.core.config import (
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
from cortex.neuron.app import NeuronState
from cortex.neuron.app import build_state as build_neuron_state
from cortex.neuron.app import create_app as create_neuron_app

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ECHO_MODELS = """
[[models]]
id = "echo"
harness = "echo"
aliases = ["parrot"]
vram_mb = 100
"""


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

    async def poll(self) -> None:
        gateway = self.state.config.gateway
        await poll_once(self.state.store, self.state.clients, gateway.unhealthy_after_failures, 2.0)


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
    neurons: Sequence[RunningNeuron],
    models_toml: str = ECHO_MODELS,
    **gateway: Any,
) -> AsyncIterator[RunningGateway]:
    section = attrs.evolve(GatewaySection(), poll_interval_s=60, keepalive_s=1, **gateway)
    config = GatewayConfig(
        gateway=section, neurons=tuple(NeuronRef(n.name, n.url) for n in neurons)
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
