"""The gateway's typed application state: everything handlers reach, in one value."""

from __future__ import annotations

import aiohttp
import attrs
from aiohttp import web

from cortex.core.config import GatewayConfig
from cortex.gateway.admission import Admission
from cortex.gateway.client import NeuronClient
from cortex.gateway.dispatch import Dispatcher
from cortex.gateway.lifecycle import Lifecycle
from cortex.gateway.metrics import GatewayMetrics
from cortex.gateway.store import FleetStore

MAX_BODY_BYTES = 32 * 1024 * 1024  # agent conversations with images stay below this


@attrs.define
class GatewayState:
    config: GatewayConfig
    models_path: str
    store: FleetStore
    session: aiohttp.ClientSession
    clients: dict[str, NeuronClient]
    lifecycle: Lifecycle
    admission: Admission
    dispatcher: Dispatcher
    metrics: GatewayMetrics
    max_body_bytes: int = MAX_BODY_BYTES


STATE = web.AppKey("gateway_state", GatewayState)


def gateway_state(request: web.Request) -> GatewayState:
    return request.app[STATE]
