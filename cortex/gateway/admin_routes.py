"""Operator routes: load, unload, reload the catalogue, and the fleet report.

I/O shell: ``POST /admin/load`` and ``/admin/unload`` (``{model, node?}``) carry
out a placement through ``Lifecycle`` as a request would; ``POST /admin/reload`` is
SIGHUP's reload; ``GET /admin/fleet`` is what ``cortex status`` prints. Like every
route but ``/health`` they need an API key when ``api_keys`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import web

from cortex.core.catalogue import feasible_nodes, is_feasible
from cortex.core.config import ModelConfig
from cortex.core.eviction import plan_eviction
from cortex.core.fit import need_mb
from cortex.core.fleet import FAILED, LOADED, LOADING, UNLOADING, ModelOnNode, NodeView
from cortex.core.router import EvictThenLoad, Load, Reject, Serve, route
from cortex.errors import BY_STATUS, ApiError, BadRequest, ConfigError, NotFound, Unavailable
from cortex.gateway.reload import reload_catalogue
from cortex.gateway.state import GatewayState, gateway_state


async def _target(request: web.Request) -> tuple[str, str | None]:
    """``{model, node?}`` from the body."""
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    model, node = body.get("model"), body.get("node")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required and must be a string", param="model")
    if node is not None and (not isinstance(node, str) or not node):
        raise BadRequest("node must be a node name", param="node")
    return model, node


def _healthy_node(state: GatewayState, name: str) -> NodeView:
    node = state.store.view.node(name)
    if node is None:
        known = ", ".join(n.name for n in state.store.view.nodes) or "none"
        raise NotFound(f"no node {name!r}; nodes: {known}", param="node")
    if not node.healthy:
        raise Unavailable(f"node {name!r} is down", retry_after_s=5)
    return node


def _plan_on(state: GatewayState, node: NodeView, profile: ModelConfig) -> tuple[str, ...]:
    """Victims to evict so ``profile`` fits on the chosen ``node``."""
    if not is_feasible(profile, node):
        where = ", ".join(feasible_nodes(profile, state.store.view.nodes)) or "none"
        raise BadRequest(
            f"model {profile.id!r} cannot run on {node.name} (pinned_on, min_devices or "
            f"min_device_vram_mb); feasible on: {where}",
            param="node",
        )
    need = need_mb(profile, state.store.measured_mb)
    strategy = state.config.eviction.strategy
    victims = plan_eviction(node, state.store.catalogue, profile, need, strategy, time.monotonic())
    if victims is None:
        raise Unavailable(
            f"model {profile.id!r} needs {need} MB; {node.name} has {node.vram_free_mb} MB free "
            "and the rest is held by busy, pinned or higher-priority models",
            retry_after_s=5,
        )
    return victims


async def admin_load(request: web.Request) -> web.Response:
    state = gateway_state(request)
    name, node_name = await _target(request)
    profile = state.store.catalogue.resolve(name)
    if profile is None:
        raise NotFound(f"model {name!r} is not in the catalogue", param="model")
    victims: tuple[str, ...] = ()
    routed = node_name is None
    if node_name is None:
        decision = route(
            state.store.view,
            state.store.catalogue,
            profile.id,
            time.monotonic(),
            strategy=state.config.eviction.strategy,
            measured_mb=state.store.measured_mb,
        )
        if isinstance(decision, Reject):
            cls = BY_STATUS.get(decision.status, Unavailable)
            raise cls(decision.message, retry_after_s=decision.retry_after_s)
        node_name = decision.node
        if isinstance(decision, EvictThenLoad):
            victims = decision.victims
    entry = _healthy_node(state, node_name).model(profile.id)
    if entry is not None and entry.status == UNLOADING:
        raise Unavailable(f"{profile.id!r} is being unloaded on {node_name}", retry_after_s=2)
    already = entry is not None and entry.status == LOADED
    if entry is not None and entry.status == LOADING:
        await state.lifecycle.wait_loaded(node_name, profile.id)
    elif not already:
        if not routed:
            victims = _plan_on(state, _healthy_node(state, node_name), profile)
        await asyncio.shield(state.lifecycle.start_load(node_name, profile, victims))
    return web.json_response(
        {
            "status": "loaded",
            "model": profile.id,
            "node": node_name,
            "already_loaded": already,
            "evicted": list(victims),
        }
    )


async def admin_unload(request: web.Request) -> web.Response:
    state = gateway_state(request)
    name, node_name = await _target(request)
    profile = state.store.catalogue.resolve(name)
    model_id = profile.id if profile is not None else name
    places = [
        node.name
        for node, entry in state.store.view.placements(model_id)
        if entry.status in (LOADED, LOADING) and node_name in (None, node.name)
    ]
    if not places:
        where = f" on {node_name}" if node_name else ""
        raise NotFound(f"model {model_id!r} is not loaded{where}", param="model")
    for node in places:
        if (node, model_id) in state.lifecycle.loads:
            with contextlib.suppress(ApiError):  # a failed load leaves nothing to unload
                await state.lifecycle.wait_loaded(node, model_id)
    await asyncio.gather(*(state.lifecycle.unload(n, model_id, "admin") for n in places))
    body: dict[str, Any] = {"status": "unloaded", "model": model_id, "nodes": places}
    pinned = [n for n in places if profile is not None and n in profile.pinned_on]
    if pinned:
        body["note"] = (
            f"pinned on {', '.join(pinned)}: it is loaded again at the next housekeeping "
            "round; remove it from pinned_on and reload to keep it unloaded"
        )
    return web.json_response(body)


async def admin_reload(request: web.Request) -> web.Response:
    state = gateway_state(request)
    try:
        catalogue = reload_catalogue(state)
    except ConfigError as exc:
        raise BadRequest(
            f"{exc.source}: {'; '.join(exc.lines)}; the old catalogue is kept",
            code="invalid_catalogue",
        ) from None
    return web.json_response(
        {"status": "reloaded", "path": state.models_path, "models": list(catalogue.ids)}
    )


def _ago(now: float, stamp: float) -> float | None:
    return round(now - stamp, 1) if stamp else None


def _model_row(model: ModelOnNode, pinned: bool, now: float) -> dict[str, Any]:
    return {
        "id": model.id,
        "status": model.status,
        "vram_mb": model.vram_used_mb,
        "devices": list(model.devices),
        "in_flight": model.in_flight,
        "queued": model.queued,
        "pending": model.pending,
        "last_used_s_ago": _ago(now, model.last_used),
        "loaded_s_ago": _ago(now, model.loaded_at),
        "pinned": pinned,
    }


def why_not_loaded(state: GatewayState, profile: ModelConfig, now: float) -> str:
    """Why a catalogue model is not loaded anywhere: the router's own answer, in words."""
    decision = route(
        state.store.view,
        state.store.catalogue,
        profile.id,
        now,
        strategy=state.config.eviction.strategy,
        measured_mb=state.store.measured_mb,
    )
    failed = [n.name for n, m in state.store.view.placements(profile.id) if m.status == FAILED]
    prefix = f"load failed on {', '.join(failed)}; " if failed else ""
    if isinstance(decision, Serve):
        return f"{prefix}loading on {decision.node}"
    if isinstance(decision, Load):
        return f"{prefix}not requested yet; would load on {decision.node} (fits in free memory)"
    if isinstance(decision, EvictThenLoad):
        victims = ", ".join(decision.victims)
        return f"{prefix}not requested yet; would load on {decision.node}, evicting {victims}"
    return prefix + decision.message


def fleet_report(state: GatewayState, now: float) -> dict[str, Any]:
    """Nodes with devices and models, then the catalogue with where and why."""
    view, catalogue = state.store.view, state.store.catalogue
    nodes = []
    for node in view.nodes:
        nodes.append(
            {
                "name": node.name,
                "endpoint": node.endpoint,
                "healthy": node.healthy,
                "failed_polls": state.store.failures.get(node.name, 0),
                "evictions_since_defrag": node.evictions_since_defrag,
                "devices": [
                    {
                        "index": d.index,
                        "name": d.name,
                        "total_mb": d.vram_total_mb,
                        "free_mb": d.vram_free_mb,
                        "used_mb": max(0, d.vram_total_mb - d.vram_free_mb),
                    }
                    for d in node.devices
                ],
                "models": [
                    _model_row(m, node.name in _pinned_on(state, m.id), now)
                    for m in sorted(node.models, key=lambda m: m.id)
                ],
            }
        )
    models = []
    for profile in catalogue.models:
        loaded_on = [
            n.name for n, m in view.placements(profile.id) if n.healthy and m.status == LOADED
        ]
        models.append(
            {
                "id": profile.id,
                "aliases": list(profile.aliases),
                "vram_mb": need_mb(profile, state.store.measured_mb),
                "priority": profile.priority,
                "pinned_on": list(profile.pinned_on),
                "feasible_on": feasible_nodes(profile, view.nodes),
                "loaded_on": loaded_on,
                "waiting": len(state.dispatcher.waiting.get(profile.id, ())),
                "why_not_loaded": None if loaded_on else why_not_loaded(state, profile, now),
            }
        )
    return {
        "eviction": {
            "strategy": state.config.eviction.strategy,
            "idle_unload_s": state.config.eviction.idle_unload_s,
            "defrag_after_cycles": state.config.eviction.defrag_after_cycles,
        },
        "nodes": nodes,
        "models": models,
    }


def _pinned_on(state: GatewayState, model_id: str) -> tuple[str, ...]:
    profile = state.store.catalogue.get(model_id)
    return profile.pinned_on if profile is not None else ()


async def admin_fleet(request: web.Request) -> web.Response:
    return web.json_response(fleet_report(gateway_state(request), time.monotonic()))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/load", admin_load)
    app.router.add_post("/admin/unload", admin_unload)
    app.router.add_post("/admin/reload", admin_reload)
    app.router.add_get("/admin/fleet", admin_fleet)
