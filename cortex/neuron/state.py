"""The neuron's application state and the request-body reading its routes share."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web

from cortex.core import wire
from cortex.core.config import NeuronConfig
from cortex.core.nesting import decode_body
from cortex.errors import BadRequest, PayloadTooLarge
from cortex.harness import DeviceInfo
from cortex.neuron import discovery
from cortex.neuron.metrics import NeuronMetrics
from cortex.neuron.registry import ModelRegistry

MAX_BODY_BYTES = 32 * 1024 * 1024  # long agent conversations with images stay below this


@attrs.define
class NeuronState:
    config: NeuronConfig
    registry: ModelRegistry
    metrics: NeuronMetrics
    devices: list[DeviceInfo]
    started: float = attrs.field(factory=time.monotonic)
    instance_id: str = attrs.field(factory=lambda: secrets.token_hex(8))
    status: str = "starting"
    port: int = 0
    gpu_readings: list[discovery.GpuReading] = attrs.field(factory=list)
    driver: tuple[str | None, str | None] = (None, None)
    providers: tuple[str, ...] = ()  # execution providers of every harness, probed after start

    @property
    def bind_url(self) -> str:
        return f"http://localhost:{self.port}"


STATE = web.AppKey("state", NeuronState)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def neuron_state(request: web.Request) -> NeuronState:
    return request.app[STATE]


async def json_body(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body exceeds {MAX_BODY_BYTES} bytes") from None
    return decode_body(raw)


def decode(data: Any, cls: type[Any]) -> Any:
    try:
        return wire.decode(data, cls)
    except wire.WireError as exc:
        raise BadRequest(str(exc)) from None
