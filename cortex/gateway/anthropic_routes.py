"""The Anthropic routes: Messages (stream and not) and count_tokens, over OpenAI neurons.

I/O shell around the pure translation core: read and check the body, translate it
(``core.translate``), place the model (``Dispatcher``), send OpenAI chat to the neuron and
translate its answer back. Streams are re-encoded event by event as upstream bytes arrive
(``AnthropicStreamTranslator``); the metrics tap still reads the neuron's own bytes.
count_tokens needs only a tokenizer, so it asks any healthy node that could host the model.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import aiohttp
from aiohttp import web

from cortex.core.catalogue import default_profile, is_feasible
from cortex.core.config import ModelConfig
from cortex.core.envelopes import ANTHROPIC
from cortex.core.fleet import LOADED
from cortex.core.router import Reject, route
from cortex.core.sse import SSEParser, encode_event
from cortex.core.stream import AnthropicStreamTranslator, Event
from cortex.core.translate import (
    anthropic_count_tokens_request,
    anthropic_to_openai,
    new_message_id,
    openai_to_anthropic,
)
from cortex.errors import BY_STATUS, Unavailable, UpstreamFailed, UpstreamTimeout
from cortex.gateway.context import CURRENT, RequestContext
from cortex.gateway.dispatch import Placement
from cortex.gateway.failover import place_and_send
from cortex.gateway.metrics import Tap
from cortex.gateway.openai_routes import read_json, send_upstream
from cortex.gateway.proxy import ClientLink, IdleWatch, read_whole
from cortex.gateway.state import GatewayState, gateway_state

log = logging.getLogger("cortex.gateway.anthropic")

KEEPALIVE = encode_event("ping", {"type": "ping"})
# Tokenizing loads at most a tokenizer and a chat template on the neuron, never weights.
TOKENIZE_TIMEOUT_S = 60.0
_ENDS = frozenset({"message_stop", "error"})


async def _send(
    state: GatewayState,
    placement: Placement,
    ctx: RequestContext,
    body: dict[str, Any],
    *,
    stream: bool,
) -> aiohttp.ClientResponse:
    """POST the OpenAI chat body to the placed neuron; an error answer raises."""
    raw = json.dumps(body, ensure_ascii=False).encode()
    return await send_upstream(
        state, placement, ctx, raw, path="/v1/chat/completions", stream=stream
    )


def _events_for(
    parser: SSEParser, translator: AnthropicStreamTranslator, chunk: bytes
) -> list[Event]:
    """The Anthropic events one upstream read completes (keep-alives become pings)."""
    out: list[Event] = []
    for event in parser.feed(chunk):
        if event.comment:
            out.append(translator.ping())
        elif event.data == "[DONE]":
            out += translator.finish()
        else:
            try:
                data = json.loads(event.data)
            except ValueError:
                data = None
            if isinstance(data, Mapping):
                out += translator.feed(data)
            else:
                out += translator.fail("malformed chunk from the neuron")
        if out and out[-1][0] in _ENDS:
            break
    return out


def _encode(events: Sequence[Event]) -> bytes:
    return b"".join(encode_event(name, data) for name, data in events)


async def relay_translated(
    upstream: aiohttp.ClientResponse,
    link: ClientLink,
    translator: AnthropicStreamTranslator,
    tap: Tap,
) -> web.StreamResponse:
    """Translate the neuron's OpenAI stream into Anthropic events as it arrives; a
    failure mid-stream, or a stream cut before ``[DONE]``, ends with an ``error`` event."""
    response = await link.prepare()
    parser = SSEParser(comments=True)
    watch = IdleWatch(upstream)
    try:
        async for chunk in upstream.content.iter_any():
            watch.seen()
            tap(chunk)
            events = _events_for(parser, translator, chunk)
            if events:
                await response.write(_encode(events))
                if events[-1][0] in _ENDS:
                    break
        else:
            tail = translator.fail("the neuron's stream ended before it finished")
            if tail:
                link.failed = UpstreamFailed("the neuron's stream ended before it finished")
                await response.write(_encode(tail))
    except ConnectionResetError:
        raise  # the client left; aiohttp's error is also a ClientError
    except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
        if isinstance(exc, asyncio.TimeoutError) or watch.expired:
            link.failed = UpstreamTimeout("the neuron went silent mid-stream")
            tail = translator.fail(link.failed.message, "timeout_error")
            await response.write(_encode(tail))
        else:
            log.warning("upstream failed mid-stream: %s", type(exc).__name__)
            link.failed = UpstreamFailed("the neuron failed mid-stream")
            await response.write(_encode(translator.fail(link.failed.message)))
    finally:
        watch.stop()
        upstream.release()
    await response.write_eof()
    return response


async def _send_as_placed(
    state: GatewayState,
    ctx: RequestContext,
    chat: dict[str, Any],
    placement: Placement,
    *,
    stream: bool,
) -> aiohttp.ClientResponse:
    chat["model"] = placement.profile.id  # the neuron knows the model by its id
    return await _send(state, placement, ctx, chat, stream=stream)


async def messages(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages."""
    state = gateway_state(request)
    ctx = CURRENT.get()
    _, body = await read_json(request, state.max_body_bytes)
    chat = anthropic_to_openai(body)  # every 400 before routing
    stream = bool(chat.get("stream"))
    stops: list[str] = chat.get("stop", [])
    link = ClientLink(request, ANTHROPIC, KEEPALIVE, {"x-request-id": ctx.request_id})
    ctx.link = link

    model = body["model"]
    send = partial(_send_as_placed, state, ctx, chat, stream=stream)
    placement, upstream = await place_and_send(state, ctx, link if stream else None, model, send)
    del body, chat, send  # sent: a long stream need not hold the request's parses
    message_id = new_message_id()
    try:
        if stream:
            translator = AnthropicStreamTranslator(
                model=model, message_id=message_id, stop_sequences=stops
            )
            return await relay_translated(upstream, link, translator, state.metrics.tap(ctx))
        raw = await read_whole(upstream)
    finally:
        placement.release()
    state.metrics.observe_body(ctx, raw)
    try:
        completion = json.loads(raw)
    except ValueError:
        completion = None
    if not isinstance(completion, Mapping):
        raise UpstreamFailed(f"neuron {placement.node} sent a malformed chat completion")
    message = openai_to_anthropic(
        completion, model=model, stop_sequences=stops, message_id=message_id
    )
    return web.json_response(message, headers={"x-request-id": ctx.request_id})


def tokenizer_node(state: GatewayState, name: str) -> tuple[ModelConfig, str]:
    """A healthy node that can tokenize for ``name``: one with it loaded first, else any
    where it is feasible. 404 for an unknown model, 503 when no healthy node fits."""
    view, catalogue = state.store.view, state.store.catalogue
    profile = catalogue.resolve(name)
    model_id = profile.id if profile is not None else name
    healthy = view.healthy_nodes()
    loaded = sorted(
        n.name for n in healthy if (m := n.model(model_id)) is not None and m.status == LOADED
    )
    if profile is None:
        if not loaded:
            decision = route(view, catalogue, name, 0.0)
            if isinstance(decision, Reject):
                cls = BY_STATUS.get(decision.status, Unavailable)
                raise cls(decision.message, retry_after_s=decision.retry_after_s)
            raise Unavailable(f"model {name!r} is not loaded on a healthy node", retry_after_s=5)
        return default_profile(name), loaded[0]
    if loaded:
        return profile, loaded[0]
    feasible = sorted(n.name for n in healthy if is_feasible(profile, n))
    if not feasible:
        total = len(view.nodes)
        raise Unavailable(
            f"model {profile.id!r}: no healthy node can tokenize for it "
            f"({len(healthy)} of {total} healthy)",
            retry_after_s=5,
        )
    return profile, feasible[0]


async def count_tokens(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages/count_tokens."""
    state = gateway_state(request)
    ctx = CURRENT.get()
    _, body = await read_json(request, state.max_body_bytes)
    tokenize = anthropic_count_tokens_request(body)
    profile, node = tokenizer_node(state, body["model"])
    ctx.model, ctx.node = profile.id, node
    tokenize.update(
        model=profile.id,
        source=profile.source_or_id,
        harness=profile.harness,
        options=dict(profile.options),
    )
    result = await state.clients[node].post("/tokenize", tokenize, timeout=TOKENIZE_TIMEOUT_S)
    tokens = result.get("tokens") if isinstance(result, dict) else None
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise UpstreamFailed(f"neuron {node} sent no token count")
    return web.json_response({"input_tokens": tokens}, headers={"x-request-id": ctx.request_id})
