"""Read-only routes over the fleet: the model list, one model, gateway health.

I/O shell over pure views of the store. One list body serves both SDK families:
OpenAI's list fields plus Anthropic's ``has_more``/``first_id``/``last_id`` and
per-entry ``type``/``display_name``/``created_at`` (the Anthropic SDK paginates
forever without ``has_more: false``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import web

from cortex.core.catalogue import default_profile, feasible_nodes
from cortex.core.config import ModelConfig
from cortex.core.fleet import FleetView
from cortex.errors import NotFound
from cortex.gateway.state import GatewayState, gateway_state

EPOCH = "1970-01-01T00:00:00Z"


def model_entry(profile: ModelConfig, fleet: FleetView) -> dict[str, Any]:
    locations = [
        {"node": n.name, "status": m.status}
        for n in fleet.nodes
        if (m := n.model(profile.id)) is not None
    ]
    loaded = any(
        loc["status"] == "loaded" and (n := fleet.node(loc["node"])) is not None and n.healthy
        for loc in locations
    )
    return {
        "id": profile.id,
        "object": "model",
        "type": "model",
        "created": 0,
        "created_at": EPOCH,
        "owned_by": "cortex",
        "display_name": profile.id,
        "loaded": loaded,
        "locations": locations,
        "feasible_on": feasible_nodes(profile, fleet.nodes),
        "aliases": list(profile.aliases),
        "context_length": profile.context_length or None,
    }


def all_profiles(state: GatewayState) -> list[ModelConfig]:
    profiles = list(state.store.catalogue.models)
    known = {p.id for p in profiles}
    for node in state.store.view.nodes:
        for model in node.models:
            if model.id not in known:
                known.add(model.id)
                profiles.append(default_profile(model.id))
    return profiles


async def list_models(request: web.Request) -> web.Response:
    state = gateway_state(request)
    entries = [model_entry(p, state.store.view) for p in all_profiles(state)]
    return web.json_response(
        {
            "object": "list",
            "data": entries,
            "has_more": False,
            "first_id": entries[0]["id"] if entries else None,
            "last_id": entries[-1]["id"] if entries else None,
        }
    )


async def get_model(request: web.Request) -> web.Response:
    state = gateway_state(request)
    name = unquote(request.match_info["model_id"])
    profile = state.store.catalogue.resolve(name)
    if profile is None and any(n.model(name) for n in state.store.view.nodes):
        profile = default_profile(name)
    if profile is None:
        raise NotFound(f"model {name!r} does not exist", param="model", code="model_not_found")
    return web.json_response(model_entry(profile, state.store.view))


async def health(request: web.Request) -> web.Response:
    state = gateway_state(request)
    nodes = state.store.view.nodes
    healthy = sum(1 for n in nodes if n.healthy)
    loaded = len({m.id for n in nodes if n.healthy for m in n.models if m.status == "loaded"})
    status = "ok" if nodes and healthy == len(nodes) else "degraded" if healthy else "down"
    return web.json_response(
        {
            "status": status,
            "nodes": {"healthy": healthy, "total": len(nodes)},
            "models_loaded": loaded,
        },
        status=200 if healthy else 503,
    )


def refresh_gauges(state: GatewayState) -> None:
    """Set the gauges from the current snapshot, just before a scrape."""
    metrics = state.metrics
    gone = set(metrics.model_series)
    for node in state.store.view.nodes:
        metrics.node_up.labels(node.name).set(1 if node.healthy else 0)
        for device in node.devices:
            used = device.vram_total_mb - device.vram_free_mb
            metrics.vram_used.labels(node.name, str(device.index)).set(used)
            metrics.vram_free.labels(node.name, str(device.index)).set(device.vram_free_mb)
        for model in node.models:
            labels = (model.id, node.name)
            gone.discard(labels)
            metrics.model_series.add(labels)
            metrics.in_flight.labels(*labels).set(model.in_flight)
            metrics.queued.labels(*labels).set(model.queued + model.pending)
            metrics.model_loaded.labels(*labels).set(1 if model.status == "loaded" else 0)
    for labels in gone:  # unloaded since the last scrape: zero, not stale
        for gauge in (metrics.in_flight, metrics.queued, metrics.model_loaded):
            gauge.labels(*labels).set(0)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id:.+}", get_model)
    app.router.add_get("/health", health)
