"""The OpenAI routes: chat, legacy completions, embeddings, proxied byte for byte.

I/O shell: read and check the body, place the model (``Dispatcher``), forward the
client's bytes unchanged to the neuron, relay the answer unchanged. Only the
client's credentials are dropped; the neuron gets ``neuron_token`` instead.
"""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

import aiohttp
from aiohttp import web

from cortex.core.envelopes import OPENAI
from cortex.core.nesting import decode_body
from cortex.errors import BadRequest, PayloadTooLarge
from cortex.gateway.context import CURRENT, RequestContext
from cortex.gateway.dispatch import Placement
from cortex.gateway.failover import place_and_send
from cortex.gateway.proxy import (
    ClientLink,
    open_upstream,
    read_whole,
    relay,
    upstream_error,
    watched,
)
from cortex.gateway.state import GatewayState, gateway_state

KEEPALIVE = b": keep-alive\n\n"
# A healthy neuron answers /health in milliseconds, even while it generates.
PROBE_TIMEOUT_S = 5.0


async def read_json(request: web.Request, limit: int) -> tuple[bytes, dict[str, Any]]:
    """The raw body (forwarded as is) and its parse (read for routing)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body exceeds {limit} bytes") from None
    body = decode_body(raw)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required and must be a string", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", param="stream")
    return raw, body


def upstream_headers(state: GatewayState, ctx: RequestContext) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "x-request-id": ctx.request_id}
    if state.config.gateway.neuron_token:
        headers["Authorization"] = f"Bearer {state.config.gateway.neuron_token}"
    return headers


async def send_upstream(
    state: GatewayState,
    placement: Placement,
    ctx: RequestContext,
    raw: bytes,
    *,
    path: str,
    stream: bool,
) -> aiohttp.ClientResponse:
    """POST ``raw`` to the placed neuron; an error answer raises in the client's terms.

    A non-streamed answer arrives whole, after all of its generation, so silence is no
    sign of trouble there: each ``stream_idle_timeout_s`` of it, the neuron's /health
    is asked instead, and only a neuron that no longer answers ends the wait (504).
    """
    gateway = state.config.gateway
    ctx.sent_at = time.perf_counter()
    opening = open_upstream(
        state.session,
        placement.url + path,
        raw,
        upstream_headers(state, ctx),
        stream=stream,
        idle_timeout_s=gateway.stream_idle_timeout_s,
        total_timeout_s=gateway.load_timeout_s,
    )
    if stream:
        upstream = await opening
    else:
        client = state.clients[placement.node]
        probe_s = min(PROBE_TIMEOUT_S, gateway.stream_idle_timeout_s)
        upstream = await watched(
            opening, partial(client.answers, probe_s), gateway.stream_idle_timeout_s
        )
    if upstream.status >= 400:
        raise upstream_error(upstream.status, await read_whole(upstream), placement.node)
    return upstream


async def forward(
    state: GatewayState,
    upstream: aiohttp.ClientResponse,
    ctx: RequestContext,
    *,
    stream: bool,
    link: ClientLink | None,
) -> web.StreamResponse:
    """Relay the neuron's open answer to the client (streams through ``link``)."""
    if stream and link is not None:
        return await relay(upstream, link, tap=state.metrics.tap(ctx))
    body = await read_whole(upstream)
    state.metrics.observe_body(ctx, body)
    return web.Response(
        body=body,
        status=upstream.status,
        headers={"Content-Type": "application/json", "x-request-id": ctx.request_id},
    )


async def _send(
    state: GatewayState,
    ctx: RequestContext,
    raw: bytes,
    body: dict[str, Any],
    placement: Placement,
    *,
    path: str,
    stream: bool,
) -> aiohttp.ClientResponse:
    data = raw
    if body["model"] != placement.profile.id:
        # An alias: the neuron knows the model by its id. Only then is the body rewritten.
        data = json.dumps({**body, "model": placement.profile.id}).encode()
    return await send_upstream(state, placement, ctx, data, path=path, stream=stream)


def openai_handler(path: str) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = gateway_state(request)
        ctx = CURRENT.get()
        raw, body = await read_json(request, state.max_body_bytes)
        stream = bool(body.get("stream"))
        # Only a stream can start before its answer is whole (keep-alives, error frames).
        link = None
        if stream:
            link = ctx.link = ClientLink(
                request, OPENAI, KEEPALIVE, {"x-request-id": ctx.request_id}
            )

        send = partial(_send, state, ctx, raw, body, path=path, stream=stream)
        placement, upstream = await place_and_send(state, ctx, link, body["model"], send)
        del raw, body, send  # sent: a long stream need not hold the request and its parse
        try:
            return await forward(state, upstream, ctx, stream=stream, link=link)
        finally:
            placement.release()

    return handle
