"""Eviction, idle-unload, pinned-load and defrag plans (SPEC 3.4, 3.4b). Pure: values only.

Memory is accounted by the fit rule in ``cortex.core.fit``. A model may be evicted from
a node only when it is ``loaded`` there, idle (``ModelOnNode.busy`` is false: nothing in
flight, queued or ``pending`` - the last keeps a model just loaded for waiting requests
from being evicted before it served them, which is what stops two models thrashing), and
not pinned on that node.
"""

from __future__ import annotations

from cortex.core.catalogue import Catalogue, default_profile, is_feasible
from cortex.core.config import ModelConfig
from cortex.core.fit import device_count, eligible_devices, per_device_mb, shares
from cortex.core.fleet import LOADED, LOADING, UNLOADING, FleetView, ModelOnNode, NodeView

STRATEGIES = ("lru", "priority")


def profile_of(catalogue: Catalogue, model_id: str) -> ModelConfig:
    return catalogue.get(model_id) or default_profile(model_id)


def is_pinned(catalogue: Catalogue, model_id: str, node_name: str) -> bool:
    return node_name in profile_of(catalogue, model_id).pinned_on


def evictable(node: NodeView, catalogue: Catalogue, model: ModelOnNode) -> bool:
    """Loaded, idle and not pinned on this node."""
    return (
        model.status == LOADED and not model.busy and not is_pinned(catalogue, model.id, node.name)
    )


def _lru_key(model: ModelOnNode) -> tuple[float, float, str]:
    return (model.last_used, model.loaded_at, model.id)


def _candidates(
    node: NodeView, catalogue: Catalogue, profile: ModelConfig, strategy: str
) -> list[ModelOnNode]:
    """Evictable models on the node, first to go first."""
    models = [m for m in node.models if m.id != profile.id and evictable(node, catalogue, m)]
    if strategy == "lru":
        return sorted(models, key=_lru_key)
    if strategy == "priority":
        ranked = [(profile_of(catalogue, m.id).priority, m) for m in models]
        allowed = [(p, m) for p, m in ranked if p <= profile.priority]
        return [m for _, m in sorted(allowed, key=lambda pm: (pm[0], *_lru_key(pm[1])))]
    raise ValueError(f"unknown eviction strategy {strategy!r}; expected one of {STRATEGIES}")


def plan_eviction(  # noqa: PLR0917 - positional, as the shell and SPEC call it
    node: NodeView,
    catalogue: Catalogue,
    profile: ModelConfig,
    need_mb: int,
    strategy: str,
    now: float,
) -> tuple[str, ...] | None:
    """The model ids to unload from ``node`` so ``profile`` fits, or None when none can.

    Candidates go in strategy order (``lru``: least recently used, then oldest load,
    then id; ``priority``: lowest priority first, LRU among equals, never one of higher
    priority than ``profile``) until the model fits. Then any victim whose eviction turns
    out unnecessary (it freed memory on a device the placement no longer needs) is
    spared, the most recently used first, so every victim returned is needed. ``()``
    means it fits already. ``now`` is part of the signature for strategies that age
    models; lru and priority order by the recorded times alone.
    """
    del now
    k = device_count(profile)
    per = per_device_mb(profile, need_mb)
    eligible = eligible_devices(node, profile)
    if len(eligible) < k:
        return None
    # The fit rule restricted to eligible devices, with freed memory kept as a running sum.
    base = {d.index: d.vram_free_mb for d in node.devices if d.index in eligible}
    cap = {d.index: max(d.vram_total_mb, d.vram_free_mb) for d in node.devices}

    def enough(freed: dict[int, int]) -> bool:
        roomy = sum(1 for i in eligible if min(base[i] + freed.get(i, 0), cap[i]) >= per)
        return roomy >= k

    freed: dict[int, int] = {}
    if enough(freed):
        return ()
    victims: list[tuple[ModelOnNode, dict[int, int]]] = []
    for model in _candidates(node, catalogue, profile, strategy):
        held = {i: mb for i, mb in shares(node, model).items() if i in base}
        if not held:
            continue  # frees nothing the placement could use
        victims.append((model, held))
        _add(freed, held, 1)
        if enough(freed):
            break
    else:
        return None
    for model, held in reversed(victims[:-1]):
        _add(freed, held, -1)
        if enough(freed):
            victims = [(m, h) for m, h in victims if m is not model]
        else:
            _add(freed, held, 1)
    return tuple(m.id for m, _ in victims)


def _add(freed: dict[int, int], held: dict[int, int], sign: int) -> None:
    for i, mb in held.items():
        freed[i] = freed.get(i, 0) + sign * mb


def _idle_since(model: ModelOnNode) -> float:
    return model.last_used or model.loaded_at


def plan_idle_unloads(
    fleet: FleetView, catalogue: Catalogue, idle_unload_s: float, now: float
) -> tuple[tuple[str, str], ...]:
    """(node, model id) pairs unused for ``idle_unload_s`` seconds; 0 disables.

    Only loaded, idle, unpinned models on healthy nodes. A model never used through the
    gateway counts from ``loaded_at``; one with neither time recorded (0) is skipped,
    since its age is unknown (the fleet store stamps ``loaded_at`` when it first sees a
    model loaded).
    """
    if idle_unload_s <= 0:
        return ()
    pairs = [
        (node.name, model.id)
        for node in fleet.healthy_nodes()
        for model in node.models
        if evictable(node, catalogue, model)
        and _idle_since(model) > 0
        and now - _idle_since(model) >= idle_unload_s
    ]
    return tuple(sorted(pairs))


# A failed pinned load is retried after 5 s, then 10, 20, ... up to 5 minutes: soon
# enough that a transient failure heals, slow enough that a broken model is no storm.
PINNED_RETRY_FIRST_S = 5.0
PINNED_RETRY_MAX_S = 300.0


def pinned_retry_due(failures: int, last_failure: float, now: float) -> bool:
    """Whether a pinned load that failed ``failures`` times in a row may be tried again."""
    if failures <= 0:
        return True
    delay = min(PINNED_RETRY_MAX_S, PINNED_RETRY_FIRST_S * float(2 ** min(failures - 1, 16)))
    return now - last_failure >= delay


def plan_pinned_loads(fleet: FleetView, catalogue: Catalogue) -> tuple[tuple[str, str], ...]:
    """(node, model id) pairs: pinned models feasible on a healthy node and absent there.

    Absent means no entry, or a ``failed`` one (the shell decides how soon to retry a
    failed load); a model ``loading`` or ``unloading`` there is left alone. Per node,
    highest priority first, then id.
    """
    pairs: list[tuple[str, int, str]] = []
    for node in fleet.healthy_nodes():
        for profile in catalogue.models:
            if node.name not in profile.pinned_on or not is_feasible(profile, node):
                continue
            entry = node.model(profile.id)
            if entry is None or entry.status not in (LOADED, LOADING, UNLOADING):
                pairs.append((node.name, -profile.priority, profile.id))
    return tuple((name, model_id) for name, _, model_id in sorted(pairs))


def plan_defrag(node: NodeView, catalogue: Catalogue, after_cycles: int) -> tuple[str, ...] | None:
    """SPEC 3.4b: the models to unload and reload, in reload order, or None for not now.

    Due when ``after_cycles > 0``, the node has had that many evictions since its last
    defrag, and nothing on it is in flight, queued, pending or changing state. The
    resident models come highest priority first, then by id; ``()`` means due with
    nothing resident (the shell just resets the count).
    """
    if after_cycles <= 0 or node.evictions_since_defrag < after_cycles:
        return None
    if any(m.busy or m.status in (LOADING, UNLOADING) for m in node.models):
        return None
    resident = [
        (-profile_of(catalogue, m.id).priority, m.id) for m in node.models if m.status == LOADED
    ]
    return tuple(model_id for _, model_id in sorted(resident))
