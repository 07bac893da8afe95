"""The neuron's HTTP API (SPEC section 2): lifecycle, discovery, health, metrics.

I/O shell over ``ModelRegistry`` and the harnesses. Every error leaves as the
OpenAI-style JSON envelope; no route ever answers plain text or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from cortex import __version__
from cortex.core import wire
from cortex.core.config import NeuronConfig
from cortex.core.envelopes import OPENAI, error_body, error_headers
from cortex.errors import ApiError, BadRequest, NotFound, Unauthorized
from cortex.harness import HarnessError
from cortex.neuron import discovery, inference_routes
from cortex.neuron.metrics import NeuronMetrics
from cortex.neuron.plugins import HarnessRegistry
from cortex.neuron.registry import ModelRegistry, api_error_from
from cortex.neuron.state import (
    MAX_BODY_BYTES,
    STATE,
    Handler,
    NeuronState,
    decode,
    json_body,
    neuron_state,
)

log = logging.getLogger("cortex.neuron")

GPU_REFRESH_S = 2.0  # nvidia-smi is slow; /health serves the last reading

# -- middleware -----------------------------------------------------------------


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
    state = neuron_state(request)
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
    state = neuron_state(request)
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
    state = neuron_state(request)
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


async def post_load(request: web.Request) -> web.Response:
    state = neuron_state(request)
    spec: wire.LoadRequest = decode(await json_body(request), wire.LoadRequest)
    slot = await state.registry.load(spec)
    return web.json_response(
        wire.encode(wire.LoadResult("loaded", slot.model_id, slot.vram_used_mb))
    )


async def post_unload(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("model_id"), str):
        raise BadRequest("model_id is required", param="model_id")
    await neuron_state(request).registry.unload(body["model_id"])
    return web.json_response({"status": "unloaded", "model_id": body["model_id"]})


async def get_model_path(request: web.Request) -> web.Response:
    """``/models/{id}/endpoint`` where the id may hold ``/`` (raw or percent-encoded)."""
    raw = request.raw_path.split("?", 1)[0]
    prefix, suffix = "/models/", "/endpoint"
    if not (raw.startswith(prefix) and raw.endswith(suffix)) or len(raw) <= len(prefix + suffix):
        raise NotFound(f"no route GET {request.path}")
    model_id = unquote(raw[len(prefix) : -len(suffix)])
    state = neuron_state(request)
    slot = state.registry.slots.get(model_id)
    if slot is None or slot.status != "loaded":
        raise NotFound(f"model {model_id!r} is not loaded on this neuron", code="model_not_found")
    return web.json_response({"url": state.bind_url})


async def get_metrics(request: web.Request) -> web.Response:
    state = neuron_state(request)
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
    inference_routes.add_routes(app)
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
