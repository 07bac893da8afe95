"""The gateway application: middleware (request context, auth, errors), routes, tasks.

I/O shell. Checks run in SPEC 3.1's order: auth (401), body (400, 413), model
(404), routing (429, 503). Every error leaves in the client's dialect; a request
whose stream already started ends with an error frame instead.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from cortex.core.catalogue import Catalogue
from cortex.core.config import GatewayConfig
from cortex.core.envelopes import ANTHROPIC, OPENAI, error_body, error_headers
from cortex.errors import ApiError, NotFound, Unauthorized
from cortex.gateway import admin_routes, catalogue_routes
from cortex.gateway.admission import Admission
from cortex.gateway.anthropic_routes import count_tokens, messages
from cortex.gateway.client import NeuronClient
from cortex.gateway.context import CURRENT, RequestContext
from cortex.gateway.dispatch import Dispatcher
from cortex.gateway.housekeeping import housekeep_forever, load_pinned
from cortex.gateway.lifecycle import Lifecycle
from cortex.gateway.metrics import GatewayMetrics
from cortex.gateway.openai_routes import openai_handler
from cortex.gateway.poller import POLL_TIMEOUT_S, poll_once
from cortex.gateway.proxy import ClientLink
from cortex.gateway.recent import stats_route
from cortex.gateway.state import STATE, GatewayState, gateway_state
from cortex.gateway.store import FleetStore
from cortex.linelog import LineLog

log = logging.getLogger("cortex.gateway")
access = LineLog("cortex.gateway.requests")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/health"})
NOT_YET = ("/v1/responses", "/v1/images", "/v1/audio")
MAX_REQUEST_ID = 128


def dialect_of(request: web.Request) -> str:
    if request.path.startswith("/v1/messages") or "anthropic-version" in request.headers:
        return ANTHROPIC
    return OPENAI


def _api_of(request: web.Request) -> str:
    return ANTHROPIC if request.path.startswith("/v1/messages") else OPENAI


def _error_response(error: ApiError, dialect: str, request_id: str) -> web.Response:
    headers = {"x-request-id": request_id, **error_headers(error)}
    return web.json_response(error_body(error, dialect), status=error.status, headers=headers)


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, errors in the client's dialect, one log line and metrics per request."""
    request_id = _request_id(request.headers.get("x-request-id", ""))
    ctx = RequestContext(request_id=request_id, api=_api_of(request))
    CURRENT.set(ctx)
    try:
        response = await handler(request)
        failed = ctx.link.failed if ctx.link is not None else None
        ctx.status = failed.status if failed is not None else response.status
        if not response.prepared:
            response.headers["x-request-id"] = request_id
        return response
    except ApiError as exc:
        ctx.status = exc.status
        link: ClientLink | None = ctx.link
        if link is not None and link.response is not None:
            return await link.fail(exc)
        return _error_response(exc, dialect_of(request), request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        ctx.status = exc.status
        error: ApiError = NotFound(f"no route {request.method} {request.path}")
        if exc.status != 404:
            error = ApiError(exc.reason or "error")
            error.status = exc.status
        return _error_response(error, dialect_of(request), request_id)
    except (asyncio.CancelledError, ConnectionResetError):
        ctx.status = 499  # the client went away
        raise
    except Exception:
        ctx.status = 500
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(
            ApiError("internal error; see the gateway's log"), dialect_of(request), request_id
        )
    finally:
        if request.path.startswith("/v1/") and request.method == "POST":
            # Once the response has left (this task sends it after we return): the
            # accounting stays off the client's latency.
            asyncio.get_running_loop().call_soon(_record, gateway_state(request), ctx)


def _request_id(given: str) -> str:
    """The client's id when it is a sane token (it lands in logs and headers), else a new one."""
    if 0 < len(given) <= MAX_REQUEST_ID and given.isascii() and given.isprintable():
        return given.replace(" ", "_")
    # Unique, not secret: a random prefix per process and a counter, no system call
    # and no big-number formatting per request (24 hex digits, as ever).
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


_ID_PREFIX = f"req_{random.getrandbits(48):012x}"
_ID_COUNTER = itertools.count(random.getrandbits(32))


def _record(state: GatewayState, ctx: RequestContext) -> None:
    """Metrics, the last-minute window and the request's one log line."""
    store, catalogue = state.store, state.store.catalogue
    done = state.metrics.finish(
        ctx, lambda m: catalogue.get(m) is not None or any(n.model(m) for n in store.view.nodes)
    )
    state.metrics.recent.add(
        done.model,
        ok=done.status < 400,
        ttft_s=done.ttft_s,
        tokens_per_second=done.tokens_per_second,
        completion_tokens=done.completion_tokens,
    )
    if not access.enabled():
        return  # the line's fields are not even gathered
    access.write(
        "request",
        {
            "request_id": ctx.request_id,
            "model": ctx.model,
            "node": ctx.node,
            "api": ctx.api,
            "status": ctx.status,
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "cold_start": ctx.cold_start,
            "queue_s": round(done.queue_s, 4),
            "load_s": round(done.load_s, 4),
            "prefill_s": None if done.prefill_s is None else round(done.prefill_s, 4),
            "ttft_s": None if done.ttft_s is None else round(done.ttft_s, 4),
            "tokens_per_second": (
                None if done.tokens_per_second is None else round(done.tokens_per_second, 2)
            ),
            "duration_s": round(done.duration_s, 4),
        },
    )


def auth_middleware(keys: tuple[str, ...]) -> Callable[..., Awaitable[web.StreamResponse]]:
    encoded = [k.encode() for k in keys]

    def accepted(given: str) -> bool:
        # Compare with every key, always: the time taken says nothing about which matched.
        ok = False
        for key in encoded:
            ok |= hmac.compare_digest(given.encode(), key)
        return ok

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            bearer = request.headers.get("Authorization", "")
            given = bearer[7:] if bearer[:7].lower() == "bearer " else ""
            given = given or request.headers.get("x-api-key", "")
            if not accepted(given):
                raise Unauthorized("a valid API key is required (Bearer or x-api-key)")
        return await handler(request)

    return check


async def not_yet(request: web.Request) -> web.StreamResponse:
    raise NotFound(f"{request.path} is not served by cortex yet", code="unsupported_route")


async def no_route(request: web.Request) -> web.StreamResponse:
    raise NotFound(f"no route {request.method} {request.path}")


def poll_timeout(state: GatewayState) -> float:
    return min(POLL_TIMEOUT_S, max(state.config.gateway.poll_interval_s, 0.5))


async def poll_forever(state: GatewayState) -> None:
    interval = state.config.gateway.poll_interval_s
    while True:
        await asyncio.sleep(interval)
        restarted = await poll_once(
            state.store,
            state.clients,
            state.config.gateway.unhealthy_after_failures,
            poll_timeout(state),
        )
        load_pinned(state, time.monotonic(), restarted)  # (re)appeared nodes get theirs at once


async def background(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    # One sweep before serving, so the first request already sees the fleet.
    await poll_once(
        state.store,
        state.clients,
        state.config.gateway.unhealthy_after_failures,
        poll_timeout(state),
    )
    load_pinned(state, time.monotonic())
    poller = asyncio.create_task(poll_forever(state))
    housekeeper = asyncio.create_task(housekeep_forever(state))
    yield
    poller.cancel()
    housekeeper.cancel()
    lifecycle = state.lifecycle
    await asyncio.gather(
        poller, housekeeper, *lifecycle.loads.values(), *lifecycle.unloads.values(),
        return_exceptions=True,
    )  # fmt: skip
    await state.session.close()


async def build_state(
    config: GatewayConfig, catalogue: Catalogue, models_path: str
) -> GatewayState:
    """Create the state inside the running loop (the ClientSession needs it)."""
    store = FleetStore(config.neurons, catalogue)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    token = config.gateway.neuron_token
    clients = {n.name: NeuronClient(session, n.name, n.endpoint, token) for n in config.neurons}
    metrics = GatewayMetrics()
    lifecycle = Lifecycle(store, clients, config, on_event=metrics.lifecycle_event)
    admission = Admission(store, config.gateway.max_queue_per_model)
    dispatcher = Dispatcher(store, clients, lifecycle, admission, config)
    return GatewayState(
        config=config,
        models_path=models_path,
        store=store,
        session=session,
        clients=clients,
        lifecycle=lifecycle,
        admission=admission,
        dispatcher=dispatcher,
        metrics=metrics,
    )


def create_app(state: GatewayState) -> web.Application:
    middlewares: list[Callable[..., Awaitable[web.StreamResponse]]] = [context_middleware]
    if state.config.gateway.api_keys:
        middlewares.append(auth_middleware(state.config.gateway.api_keys))
    app = web.Application(middlewares=middlewares, client_max_size=state.max_body_bytes)
    app[STATE] = state
    app.cleanup_ctx.append(background)
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        app.router.add_post(path, openai_handler(path))
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_get("/admin/stats", stats_route(state.metrics.recent))
    catalogue_routes.add_routes(app)
    admin_routes.add_routes(app)
    for prefix in NOT_YET:
        app.router.add_route("*", prefix, not_yet)
        app.router.add_route("*", prefix + "/{tail:.*}", not_yet)
    app.router.add_route("*", "/{tail:.*}", no_route)
    return app


def create_metrics_app(state: GatewayState) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        catalogue_routes.refresh_gauges(state)
        return web.Response(
            body=state.metrics.exposition(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
