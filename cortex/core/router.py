"""Routing: which node serves a request, and what must happen first (SPEC 3.2). Pure.

``route()`` reads a fleet snapshot and the catalogue and returns a decision value that
the gateway shell carries out; it reads no clock (``now`` is passed in) and does no I/O.
The memory fit rule is documented in ``cortex.core.fit`` (``fits`` is re-exported here):
``min_devices = k`` distinct devices, each with ``vram_total_mb >= min_device_vram_mb``
and ``ceil(need / k)`` MB free, where ``need`` is the measured figure once known, else
the catalogue's ``vram_mb``. A ``failed`` entry on a node is neither loaded nor in the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

import attrs

from cortex.core.catalogue import Catalogue, is_feasible
from cortex.core.config import ModelConfig
from cortex.core.eviction import plan_eviction
from cortex.core.fit import device_count, fits, need_mb, per_device_mb
from cortex.core.fleet import FAILED, LOADED, LOADING, UNLOADING, FleetView, NodeView

__all__ = [
    "Decision", "EvictThenLoad", "Load", "Reject", "Serve", "fits", "route", "sole_loaded",
]  # fmt: skip

# Retry-After for a 503: soon when busy models may free memory or a node may recover,
# later when no healthy node could host the model even empty.
RETRY_SOON_S = 5.0
RETRY_LATER_S = 30.0
# A 404 lists at most this many known models, so an error stays one readable line.
MAX_LISTED = 20


@attrs.frozen
class Serve:
    """Send the request to ``node``; the model is loaded there, or being loaded (join it)."""

    node: str
    model_id: str


@attrs.frozen
class Load:
    """Load the model on ``node`` (it fits in free memory), then serve there."""

    node: str
    model_id: str


@attrs.frozen
class EvictThenLoad:
    """Unload ``victims`` (model ids on ``node``, in this order), then load and serve."""

    node: str
    model_id: str
    victims: tuple[str, ...]


@attrs.frozen
class Reject:
    """Answer the client with ``status`` (404 or 503) and ``message``.

    ``wait``: the model would fit once busy or changing models on a node settle
    (their requests finish, a load or unload completes), so the shell may wait for
    the fleet to change and route again instead of answering now.
    """

    status: int
    message: str
    retry_after_s: float | None = None
    wait: bool = False


Decision: TypeAlias = Serve | Load | EvictThenLoad | Reject


def route(
    fleet: FleetView,
    catalogue: Catalogue,
    name: str,
    now: float,
    *,
    strategy: str = "lru",
    measured_mb: Mapping[str, int] | None = None,
) -> Decision:
    """Decide where a request for the model ``name`` (an id or an alias) goes."""
    profile = catalogue.resolve(name)
    model_id = profile.id if profile is not None else name
    entries = [(node, m) for node, m in fleet.placements(model_id) if m.status != FAILED]
    if profile is None and not entries:
        return _unknown(fleet, catalogue, name)

    live = [(node, m) for node, m in entries if node.healthy]
    loaded = [(node, m) for node, m in live if m.status == LOADED]
    if loaded:
        node, _ = min(loaded, key=lambda nm: (nm[1].in_flight + nm[1].queued, nm[0].name))
        return Serve(node.name, model_id)
    loading = [(node, m) for node, m in live if m.status == LOADING]
    if loading:
        node, _ = min(
            loading, key=lambda nm: (nm[1].in_flight + nm[1].queued + nm[1].pending, nm[0].name)
        )
        return Serve(node.name, model_id)

    if profile is None:
        return Reject(
            503,
            f"model {model_id!r} is not in the catalogue and no healthy node has it loaded",
            RETRY_SOON_S,
        )
    unloading = {node.name for node, m in live if m.status == UNLOADING}
    need = need_mb(profile, measured_mb)
    return _place(
        fleet, catalogue, profile, need=need, strategy=strategy, now=now, unloading=unloading
    )


def sole_loaded(fleet: FleetView, catalogue: Catalogue, name: str) -> Serve | None:
    """``route()``'s decision when exactly one healthy node has the model loaded, else None.

    Such a node is served whatever the counts, last uses and memory in the view (they
    only rank several loaded nodes or plan a load), so a view whose per-request counts
    are stale gives the same answer: the gateway's common case, without folding them in.
    """
    profile = catalogue.resolve(name)
    model_id = profile.id if profile is not None else name
    found: NodeView | None = None
    for node, entry in fleet.placements(model_id):
        if entry.status == LOADED and node.healthy:
            if found is not None:
                return None
            found = node
    return Serve(found.name, model_id) if found is not None else None


def _place(
    fleet: FleetView,
    catalogue: Catalogue,
    profile: ModelConfig,
    *,
    need: int,
    strategy: str,
    now: float,
    unloading: set[str],
) -> Decision:
    """Step 5: free memory first, then eviction; nodes by most free memory, then name."""
    candidates: list[NodeView] = []
    for node in fleet.healthy_by_free:
        if node.name in unloading or not is_feasible(profile, node):
            continue
        if fits(node, profile, need) is not None:
            return Load(node.name, profile.id)
        candidates.append(node)
    for node in candidates:
        victims = plan_eviction(node, catalogue, profile, need, strategy, now)
        if victims is not None:
            return EvictThenLoad(node.name, profile.id, victims)
    return _no_room(
        fleet, catalogue, profile, need, strategy=strategy, candidates=candidates,
        unloading=unloading,
    )  # fmt: skip


def _needs(profile: ModelConfig, need: int) -> str:
    k = device_count(profile)
    each = f" of at least {profile.min_device_vram_mb} MB" if profile.min_device_vram_mb else ""
    return f"model {profile.id!r} needs {need} MB on {k} device(s){each}"


def _no_room(
    fleet: FleetView,
    catalogue: Catalogue,
    profile: ModelConfig,
    need: int,
    *,
    strategy: str,
    candidates: list[NodeView],
    unloading: set[str],
) -> Reject:
    """The 503: what the model needs and what the best node has; ``wait`` when it will fit."""
    needs = _needs(profile, need)
    healthy = fleet.healthy_nodes()
    if not healthy:
        return Reject(503, f"{needs}; no healthy node (0 of {len(fleet.nodes)})", RETRY_SOON_S)
    if not candidates:
        if unloading:
            where = ", ".join(sorted(unloading))
            return Reject(503, f"{needs}; it is being unloaded on {where}", RETRY_SOON_S, True)
        pinned = f" (pinned_on: {', '.join(profile.pinned_on)})" if profile.pinned_on else ""
        return Reject(503, f"{needs}; no healthy node can host it{pinned}", RETRY_LATER_S)
    best = candidates[0]
    has = f"best node {best.name!r} has {best.vram_free_mb} MB free of {best.vram_total_mb} MB"
    message = f"{needs}; {has}"
    if any(_fits_settled(node, catalogue, profile, need, strategy) for node in candidates):
        busy = "the rest is held by busy models; it loads once they are idle"
        return Reject(503, f"{message}; {busy}", RETRY_SOON_S, True)
    if any(_fits_empty(node, profile, need) for node in candidates):
        held = "the rest is held by models that cannot be evicted (pinned or of higher priority)"
        return Reject(503, f"{message}; {held}", RETRY_SOON_S)
    return Reject(503, message, RETRY_LATER_S)


def _fits_settled(
    node: NodeView, catalogue: Catalogue, profile: ModelConfig, need: int, strategy: str
) -> bool:
    """Whether eviction could make room once every model on the node is idle and loaded.

    Busy, loading and unloading models only delay a placement; pinned ones (and, with
    the priority strategy, higher-priority ones) never leave, so waiting on them is
    pointless.
    """
    settled = attrs.evolve(
        node,
        models=tuple(
            attrs.evolve(m, status=LOADED, in_flight=0, queued=0, pending=0)
            for m in node.models
            if m.status != FAILED
        ),
    )
    return plan_eviction(settled, catalogue, profile, need, strategy, 0.0) is not None


def _fits_empty(node: NodeView, profile: ModelConfig, need: int) -> bool:
    """Whether the model would fit on the node with nothing else loaded."""
    k, per = device_count(profile), per_device_mb(profile, need)
    totals = sorted(
        (d.vram_total_mb for d in node.devices if d.vram_total_mb >= profile.min_device_vram_mb),
        reverse=True,
    )
    return len(totals) >= k and totals[k - 1] >= per


def _unknown(fleet: FleetView, catalogue: Catalogue, name: str) -> Reject:
    """The 404: name the model and list (some of) what exists."""
    known = set(catalogue.ids)
    for model_id, pairs in fleet.model_index.items():
        if any(entry.status != FAILED for _, entry in pairs):
            known.add(model_id)
    listed = sorted(known)
    shown = ", ".join(listed[:MAX_LISTED]) or "none"
    more = f" (and {len(listed) - MAX_LISTED} more)" if len(listed) > MAX_LISTED else ""
    return Reject(404, f"model {name!r} not found; known models: {shown}{more}", None)
