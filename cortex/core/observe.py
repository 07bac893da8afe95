"""Folding what neurons report (and what the gateway just did) into the fleet snapshot. Pure.

Every function takes a ``NodeView`` or ``FleetView`` and returns a new one; the
gateway's ``FleetStore`` swaps it in. Usage bookkeeping the neuron cannot know
(``last_used``, ``loaded_at``, ``pending``) is carried over from the old view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from cortex.core import wire
from cortex.core.fleet import LOADED, LOADING, DeviceView, ModelOnNode, NodeView


def observe_poll(
    node: NodeView,
    discovery: wire.Discovery,
    health: wire.Health,
    models: list[wire.ModelStatus],
    *,
    now: float,
    counts: Mapping[str, tuple[int, int]] | None = None,
) -> NodeView:
    """A successful poll: devices and resident models as the neuron reports them.

    ``counts`` are the gateway's own (in flight, queued) per model on this node:
    fresher than the neuron's, which only sees requests once they are admitted.
    """
    counts = counts or {}
    names = {d.index: d for d in discovery.devices}
    devices = tuple(
        DeviceView(
            index=h.index,
            name=names[h.index].name if h.index in names else f"device{h.index}",
            vram_total_mb=names[h.index].vram_total_mb
            if h.index in names
            else h.vram_used_mb + h.vram_free_mb,
            vram_free_mb=h.vram_free_mb,
        )
        for h in health.devices
    )
    before = {m.id: m for m in node.models}
    resident = []
    for report in models:
        old = before.get(report.id)
        resident.append(
            ModelOnNode(
                id=report.id,
                status=report.status,
                vram_used_mb=report.vram_used_mb,
                devices=tuple(report.devices),
                in_flight=counts.get(report.id, (report.in_flight, 0))[0],
                queued=counts.get(report.id, (0, report.queued))[1],
                last_used=old.last_used if old else 0.0,
                loaded_at=_loaded_at(old, report.status, now),
                pending=old.pending if old else 0,
            )
        )
    # A load or unload the gateway started stays visible until the neuron reports it.
    reported = {m.id for m in models}
    for old in node.models:
        if old.id not in reported and old.status == LOADING:
            resident.append(old)
    return attrs.evolve(node, healthy=True, devices=devices, models=tuple(resident))


def _loaded_at(old: ModelOnNode | None, status: str, now: float) -> float:
    """When the model became loaded: kept once known, stamped when first seen loaded."""
    if old is not None and old.loaded_at and (old.status == LOADED or status != LOADED):
        return old.loaded_at
    return now if status == LOADED else 0.0


def observe_failure(node: NodeView, failures: int, unhealthy_after: int) -> NodeView:
    """A failed poll; the node leaves routing after ``unhealthy_after`` in a row."""
    if failures >= unhealthy_after:
        return attrs.evolve(node, healthy=False)
    return node


def set_model(node: NodeView, model: ModelOnNode) -> NodeView:
    others = tuple(m for m in node.models if m.id != model.id)
    return attrs.evolve(node, models=(*others, model))


def _shift_free(node: NodeView, devices: tuple[int, ...], delta_mb: int) -> NodeView:
    """Move ``delta_mb`` of free memory, spread over ``devices``, until the next poll.

    Free memory may go below zero for a moment: a load reserves its memory while the
    models it evicts still hold theirs, and clamping would lose that debt (the view
    would then offer memory the device does not have once they are gone).
    """
    if not devices or not delta_mb:
        return node
    share = delta_mb // len(devices)
    return attrs.evolve(
        node,
        devices=tuple(
            attrs.evolve(
                d, vram_free_mb=min(max(d.vram_total_mb, d.vram_free_mb), d.vram_free_mb + share)
            )
            if d.index in devices
            else d
            for d in node.devices
        ),
    )


def set_status(
    node: NodeView, model_id: str, status: str, now: float, vram_mb: int = 0
) -> NodeView:
    """The gateway's own load/unload has moved a model to ``status``.

    A new load reserves its memory on the device with most free memory (the
    neuron's own rule), so a second placement before the next poll sees it taken.
    """
    old = node.model(model_id)
    if old is None:
        devices: tuple[int, ...] = ()
        if node.devices:
            devices = (max(node.devices, key=lambda d: (d.vram_free_mb, -d.index)).index,)
        loaded_at = now if status == LOADED else 0.0
        model = ModelOnNode(
            id=model_id, status=status, vram_used_mb=vram_mb, devices=devices, loaded_at=loaded_at
        )
        return set_model(_shift_free(node, devices, -vram_mb), model)
    model = attrs.evolve(old, status=status, vram_used_mb=vram_mb or old.vram_used_mb)
    if status == LOADED and old.status != LOADED:
        model = attrs.evolve(model, loaded_at=now)
    node = _shift_free(node, old.devices, old.vram_used_mb - model.vram_used_mb)
    return set_model(node, model)


def drop_model(node: NodeView, model_id: str) -> NodeView:
    old = node.model(model_id)
    if old is None:
        return node
    node = _shift_free(node, old.devices, old.vram_used_mb)
    return attrs.evolve(node, models=tuple(m for m in node.models if m.id != model_id))


def touch(node: NodeView, model_id: str, now: float) -> NodeView:
    old = node.model(model_id)
    if old is None:
        return node
    return set_model(node, attrs.evolve(old, last_used=now))


def set_counts(node: NodeView, model_id: str, in_flight: int, queued: int) -> NodeView:
    old = node.model(model_id)
    if old is None:
        return node
    return set_model(node, attrs.evolve(old, in_flight=in_flight, queued=queued))


# One model's gateway-side usage: (model id, (in flight, queued) or None to keep them,
# last used or None to keep it).
Usage = tuple[str, tuple[int, int] | None, float | None]


def apply_usage(node: NodeView, changes: Sequence[Usage]) -> NodeView:
    """Several ``set_counts``/``touch`` at once, in their order: each changed model
    moves last, as ``set_model`` moves it; models not on the node are skipped."""
    by_id = {m.id: m for m in node.models}
    moved: dict[str, ModelOnNode] = {}
    for model_id, counts, used in changes:
        old = moved.pop(model_id, None) or by_id.get(model_id)
        if old is None:
            continue
        in_flight, queued = (old.in_flight, old.queued) if counts is None else counts
        last_used = old.last_used if used is None else used
        moved[model_id] = attrs.evolve(old, in_flight=in_flight, queued=queued, last_used=last_used)
    if not moved:
        return node
    kept = tuple(m for m in node.models if m.id not in moved)
    return attrs.evolve(node, models=kept + tuple(moved.values()))


def add_pending(node: NodeView, model_id: str, delta: int) -> NodeView:
    old = node.model(model_id)
    if old is None:
        return node
    return set_model(node, attrs.evolve(old, pending=max(0, old.pending + delta)))


def count_eviction(node: NodeView, reset: bool = False) -> NodeView:
    return attrs.evolve(
        node, evictions_since_defrag=0 if reset else node.evictions_since_defrag + 1
    )
