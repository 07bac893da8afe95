"""The neuron's HTTP API (SPEC section 2): lifecycle, discovery, health, inference.

I/O shell over ``ModelRegistry`` and the harnesses. Every error leaves as the
OpenAI-style JSON envelope; no route ever answers plain text or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import attrs
from aiohttp import web

from cortex import __version__
from cortex.core import wire
from cortex.core.config import NeuronConfig
from cortex.core.envelopes import OPENAI, error_body, error_headers
from cortex.core.nesting import MAX_JSON_DEPTH, too_deep
from cortex.errors import ApiError, BadRequest, NotFound, PayloadTooLarge, Unauthorized
from cortex.harness import DeviceInfo, HarnessError
from cortex.neuron import discovery
from cortex.neuron.generate import serve
from cortex.neuron.metrics import NeuronMetrics
from cortex.neuron.plugins import HarnessRegistry
from cortex.neuron.registry import ModelRegistry, api_error_from
from cortex.neuron.requests import parse_chat, parse_completion, wants_usage_chunk

log = logging.getLogger("cortex.neuron")

MAX_BODY_BYTES = 32 * 1024 * 1024  # long agent conversations with images stay below this
GPU_REFRESH_S = 2.0  # nvidia-smi is slow; /health serves the last reading


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


def _state(request: web.Request) -> NeuronState:
    return request.app[STATE]


async def _json_body(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body exceeds {MAX_BODY_BYTES} bytes") from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # nested past the interpreter's own limit
        raise BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    if too_deep(raw, body):
        raise BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return body


# -- middleware -----------------------------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(
            error_body(exc, OPENAI), status=exc.status, headers=error_headers(exc)
        )
    except HarnessError as exc:
        error = api_error_from(exc)
        return web.json_response(error_body(error, OPENAI), status=error.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = ApiError(exc.reason or "error")
        error.status = exc.status
        error.code = "not_found" if exc.status == 404 else "http_error"
        if exc.status == 404:
            error.message = f"no route {request.method} {request.path}"
        return web.json_response(error_body(error, OPENAI), status=exc.status)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        error = ApiError("internal error; see the neuron's log")
        return web.json_response(error_body(error, OPENAI), status=500)


def auth_middleware(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/health":
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                raise Unauthorized("this neuron needs its token as a Bearer credential")
        return await handler(request)

    return check


# -- routes ---------------------------------------------------------------------


async def get_discovery(request: web.Request) -> web.Response:
    state = _state(request)
    total, _ = discovery.meminfo_mb()
    gpus = {g.index: g for g in state.gpu_readings}
    body = wire.Discovery(
        **discovery.host_facts(),
        version=__version__,
        devices=tuple(
            wire.DeviceReport(
                index=d.index,
                name=d.name,
                vram_total_mb=d.vram_total_mb,
                compute_capability=gpus[d.index].compute_capability if d.index in gpus else None,
            )
            for d in state.devices
        ),
        cpu=wire.CpuReport(cores=discovery.cpu_cores(), ram_total_mb=total),
        harnesses=tuple(state.registry.harnesses.names),
        providers=state.providers,
        driver_version=state.driver[0],
        cuda_version=state.driver[1],
        instance_id=state.instance_id,
    )
    return web.json_response(wire.encode(body))


def device_health(state: NeuronState) -> list[wire.DeviceHealth]:
    gpus = {g.index: g for g in state.gpu_readings}
    used = state.registry.used_mb()
    out = []
    for d in state.devices:
        g = gpus.get(d.index)
        if g is not None:
            out.append(
                wire.DeviceHealth(
                    d.index,
                    g.vram_used_mb,
                    g.vram_total_mb - g.vram_used_mb,
                    g.utilization_pct,
                    g.temp_c,
                )
            )
        else:
            mine = used.get(d.index, 0)
            out.append(wire.DeviceHealth(d.index, mine, max(0, d.vram_total_mb - mine)))
    return out


async def get_health(request: web.Request) -> web.Response:
    state = _state(request)
    body = wire.Health(
        status=state.status,
        uptime_s=round(time.monotonic() - state.started, 3),
        devices=tuple(device_health(state)),
        models=tuple(
            wire.ModelLoad(s.model_id, s.in_flight, s.queued) for s in state.registry.slots.values()
        ),
        instance_id=state.instance_id,
    )
    return web.json_response(wire.encode(body))


async def get_models(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response(
        [
            wire.encode(
                wire.ModelStatus(
                    id=s.model_id,
                    harness=s.harness,
                    status=s.status,
                    devices=s.devices,
                    vram_used_mb=s.vram_used_mb,
                    in_flight=s.in_flight,
                    queued=s.queued,
                    provider=s.model.provider if s.model else "",
                    context_length=s.model.context_length if s.model else 0,
                    error=s.error,
                )
            )
            for s in state.registry.slots.values()
        ]
    )


def _decode(data: Any, cls: type[Any]) -> Any:
    try:
        return wire.decode(data, cls)
    except wire.WireError as exc:
        raise BadRequest(str(exc)) from None


async def post_load(request: web.Request) -> web.Response:
    state = _state(request)
    spec: wire.LoadRequest = _decode(await _json_body(request), wire.LoadRequest)
    slot = await state.registry.load(spec)
    return web.json_response(
        wire.encode(wire.LoadResult("loaded", slot.model_id, slot.vram_used_mb))
    )


async def post_unload(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("model_id"), str):
        raise BadRequest("model_id is required", param="model_id")
    await _state(request).registry.unload(body["model_id"])
    return web.json_response({"status": "unloaded", "model_id": body["model_id"]})


async def get_model_path(request: web.Request) -> web.Response:
    """``/models/{id}/endpoint`` where the id may hold ``/`` (raw or percent-encoded)."""
    raw = request.raw_path.split("?", 1)[0]
    prefix, suffix = "/models/", "/endpoint"
    if not (raw.startswith(prefix) and raw.endswith(suffix)) or len(raw) <= len(prefix + suffix):
        raise NotFound(f"no route GET {request.path}")
    model_id = unquote(raw[len(prefix) : -len(suffix)])
    state = _state(request)
    slot = state.registry.slots.get(model_id)
    if slot is None or slot.status != "loaded":
        raise NotFound(f"model {model_id!r} is not loaded on this neuron", code="model_not_found")
    return web.json_response({"url": state.bind_url})


async def post_tokenize(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise BadRequest("model is required", param="model")
    messages, tools, prompt = body.get("messages"), body.get("tools"), body.get("prompt")
    if messages is None and prompt is None:
        raise BadRequest("messages or prompt is required", param="messages")
    slot = state.registry.slots.get(body["model"])
    if slot is not None and slot.model is not None:
        count = await slot.model.count_tokens(messages, tools, prompt)
    else:
        spec = _decode(
            {
                "model_id": body["model"],
                "source": body.get("source"),
                "harness": body.get("harness"),
                "options": body.get("options") or {},
            },
            wire.LoadRequest,
        )
        harness = state.registry.harnesses.get(spec.harness or state.registry.default_harness)
        count = await harness.count_tokens(state.registry.spec_for(spec), messages, tools, prompt)
    return web.json_response({"tokens": count})


def _chat_or_completion(chat: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = _state(request)
        body = await _json_body(request)
        request_id = request.headers.get("x-request-id", "")
        parse = parse_chat if chat else parse_completion
        generation = parse(body, request_id)
        slot = state.registry.loaded(body["model"])
        return await serve(
            request,
            slot,
            generation,
            chat=chat,
            stream=bool(body.get("stream")),
            include_usage=wants_usage_chunk(body),
            metrics=state.metrics,
        )

    return handle


async def post_embeddings(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise BadRequest("model is required", param="model")
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise BadRequest("input must be a string or a non-empty list of strings", param="input")
    slot = state.registry.loaded(body["model"])
    async with slot.admit() as model:
        vectors = await model.embed(inputs)
        tokens = sum([await model.count_tokens(None, None, text) for text in inputs])
    state.metrics.generation(slot.model_id, tokens, 0, None, 0.0)
    return web.json_response(
        {
            "object": "list",
            "model": slot.model_id,
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def get_metrics(request: web.Request) -> web.Response:
    state = _state(request)
    for slot in state.registry.slots.values():
        state.metrics.set_load(slot.model_id, slot.in_flight, slot.queued)
    return web.Response(
        body=state.metrics.exposition(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


# -- background work --------------------------------------------------------------


async def _refresh_gpus(state: NeuronState) -> None:
    while True:
        state.gpu_readings = await discovery.read_gpus()
        await asyncio.sleep(GPU_REFRESH_S)


def _probe_providers(registry: HarnessRegistry) -> tuple[str, ...]:
    found: list[str] = []
    for name in registry.names:
        try:
            found += [p for p in registry.get(name).providers() if p not in found]
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the neuron
            log.warning("harness %s cannot be probed: %s", name, exc)
    return tuple(found)


async def _probe(state: NeuronState) -> None:
    """Ask each harness for its providers in a thread: it may import onnxruntime.

    Loads wait for it (``registry.imports_settled``): two threads importing numpy
    for the first time at once can leave it half-initialised."""
    try:
        state.providers = await asyncio.to_thread(_probe_providers, state.registry.harnesses)
    finally:
        state.registry.imports_settled.set()


async def _preload(state: NeuronState) -> None:
    for entry in state.config.preload:
        model_id, _, harness = entry.partition("@")
        try:
            await state.registry.load(wire.LoadRequest(model_id=model_id, harness=harness or None))
        except (ApiError, HarnessError) as exc:
            log.error("preload of %s failed: %s", entry, exc)
    state.status = "ok"


async def background(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    tasks = [asyncio.create_task(_preload(state)), asyncio.create_task(_probe(state))]
    if any(d.kind == "cuda" for d in state.devices):
        state.driver = await discovery.read_driver()
        tasks.append(asyncio.create_task(_refresh_gpus(state)))
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await state.registry.unload_all(drain_s=5.0)


def create_app(state: NeuronState) -> web.Application:
    middlewares: list[Any] = [errors_middleware]
    if state.config.token:
        middlewares.append(auth_middleware(state.config.token))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app[STATE] = state
    app.cleanup_ctx.append(background)
    app.router.add_get("/discovery", get_discovery)
    app.router.add_get("/health", get_health)
    app.router.add_get("/models", get_models)
    app.router.add_post("/models/load", post_load)
    app.router.add_post("/models/unload", post_unload)
    app.router.add_get("/models/{tail:.+}", get_model_path)
    app.router.add_post("/tokenize", post_tokenize)
    app.router.add_post("/v1/chat/completions", _chat_or_completion(chat=True))
    app.router.add_post("/v1/completions", _chat_or_completion(chat=False))
    app.router.add_post("/v1/embeddings", post_embeddings)
    app.router.add_get("/metrics", get_metrics)
    return app


async def build_state(
    config: NeuronConfig, models_dir: str, harnesses: HarnessRegistry | None = None
) -> NeuronState:
    devices = await discovery.discover_devices(config.simulate_devices)
    metrics = NeuronMetrics()
    registry = ModelRegistry(
        harnesses or HarnessRegistry(), devices, models_dir, config.default_harness, metrics
    )
    return NeuronState(config=config, registry=registry, metrics=metrics, devices=devices)
