"""Hypothesis strategies for random fleets and catalogues, and an independent fit oracle."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from hypothesis import strategies as st

from cortex.core.catalogue import Catalogue
from cortex.core.config import ModelConfig
from cortex.core.fleet import (
    FAILED,
    LOADED,
    LOADING,
    UNLOADING,
    DeviceView,
    FleetView,
    ModelOnNode,
    NodeView,
)

NODE_NAMES = ("a", "b", "c", "d")
MODEL_IDS = tuple(f"m{i}" for i in range(7))
SIZES = (4000, 8000, 12000, 16000, 24000, 48000)
STATUSES = (LOADED,) * 6 + (LOADING, UNLOADING, FAILED)

busy_counts = st.tuples(*[st.integers(0, 2)] * 3).filter(any)
times = st.sampled_from((0.0, 10.0, 20.0, 30.0, 40.0, 50.0))


def split(total: int, devices: tuple[int, ...]) -> dict[int, int]:
    """Even split, remainder to the first devices listed (the documented rule)."""
    base, extra = divmod(total, len(devices))
    return {d: base + (1 if n < extra else 0) for n, d in enumerate(devices)}


@st.composite
def nodes(draw: st.DrawFn, name: str, model_ids: Iterable[str] = MODEL_IDS) -> NodeView:
    """A node with 1-4 devices and resident models whose memory adds up."""
    totals = draw(st.lists(st.sampled_from(SIZES), min_size=1, max_size=4))
    used = [0] * len(totals)
    models: list[ModelOnNode] = []
    for model_id in draw(
        st.lists(st.sampled_from(tuple(model_ids)), unique=True, min_size=1, max_size=5)
    ):
        status = draw(st.sampled_from(STATUSES))
        devices: tuple[int, ...] = ()
        vram = 0
        if status != FAILED:
            k = draw(st.integers(1, len(totals)))
            devices = tuple(sorted(draw(st.permutations(range(len(totals))))[:k]))
            room = min(totals[d] - used[d] for d in devices)
            vram = room * k * draw(st.sampled_from((1, 1, 2, 2, 3, 4))) // 4 // 500 * 500
            for d, mb in split(vram, devices).items():
                used[d] += mb
        reported = () if len(totals) == 1 and draw(st.booleans()) else devices
        idle = draw(st.integers(0, 3)) > 0
        in_flight, queued, pending = (0, 0, 0) if idle else draw(busy_counts)
        models.append(
            ModelOnNode(
                id=model_id,
                status=status,
                vram_used_mb=vram,
                devices=reported,
                in_flight=in_flight,
                queued=queued,
                pending=pending,
                last_used=draw(times),
                loaded_at=draw(times),
            )
        )
    other = [
        min(draw(st.sampled_from((0, 0, 500, 1000))), t - u)
        for t, u in zip(totals, used, strict=True)
    ]
    devices_view = tuple(
        DeviceView(i, f"gpu{i}", t, max(t - used[i] - other[i], 0)) for i, t in enumerate(totals)
    )
    return NodeView(
        name=name,
        endpoint=f"http://{name}:13131",
        healthy=draw(st.integers(0, 3)) > 0,
        devices=devices_view,
        models=tuple(models),
        evictions_since_defrag=draw(st.integers(0, 3)),
    )


@st.composite
def fleets(draw: st.DrawFn) -> FleetView:
    names = draw(st.lists(st.sampled_from(NODE_NAMES), min_size=1, max_size=4, unique=True))
    return FleetView(tuple(draw(nodes(name)) for name in names))


@st.composite
def profiles(draw: st.DrawFn, model_id: str) -> ModelConfig:
    pinned = draw(st.sampled_from(((),) * 8 + tuple(itertools.combinations(NODE_NAMES, 2))))
    return ModelConfig(
        id=model_id,
        harness="echo",
        aliases=(f"alias-{model_id}",) if draw(st.booleans()) else (),
        vram_mb=draw(st.integers(0, 60)) * 500,
        min_devices=draw(st.sampled_from((1, 1, 1, 2, 3))),
        min_device_vram_mb=draw(st.sampled_from((0, 0, 8000, 16000))),
        pinned_on=pinned,
        priority=draw(st.integers(0, 3)),
    )


@st.composite
def catalogues(draw: st.DrawFn) -> Catalogue:
    """Most of MODEL_IDS, so a fleet also holds models the catalogue does not know."""
    ids = draw(st.lists(st.sampled_from(MODEL_IDS), unique=True, min_size=1, max_size=6))
    return Catalogue(tuple(draw(profiles(model_id)) for model_id in sorted(ids)))


def truth_free(node: NodeView, victims: Iterable[str] = ()) -> dict[int, int]:
    """Free memory per device after unloading ``victims``, from the generator's accounting."""
    free = {d.index: d.vram_free_mb for d in node.devices}
    for model_id in victims:
        entry = node.model(model_id)
        assert entry is not None
        devices = entry.devices or (node.devices[0].index,)
        for d, mb in split(entry.vram_used_mb, devices).items():
            free[d] += mb
    return free


def truly_fits(node: NodeView, profile: ModelConfig, need: int, free: dict[int, int]) -> bool:
    """Brute force: some k eligible devices each have ceil(need / k) free."""
    k = max(profile.min_devices, 1)
    per = -(-need // k)
    ok = [d for d in node.devices if d.vram_total_mb >= profile.min_device_vram_mb]
    return any(all(free[d.index] >= per for d in combo) for combo in itertools.combinations(ok, k))


@st.composite
def eviction_cases(draw: st.DrawFn) -> tuple[NodeView, Catalogue, ModelConfig, int, str]:
    """A node, a catalogue, a new model, its need and a strategy.

    Half the needs sit on a boundary: exactly what unloading some random models would
    leave free on the roomiest device, give or take one MB.
    """
    node = draw(nodes("a"))
    profile = draw(profiles("new"))
    if draw(st.booleans()):
        need = node.vram_total_mb * draw(st.integers(0, 8)) // 8 // 500 * 500
    else:
        gone = draw(st.lists(st.sampled_from([m.id for m in node.models]), unique=True))
        roomiest = max(truth_free(node, gone).values())
        need = max(roomiest * max(profile.min_devices, 1) + draw(st.sampled_from((0, 1, -1))), 0)
    strategy = draw(st.sampled_from(("lru", "priority")))
    return node, draw(catalogues()), profile, need, strategy


NAMES = (*MODEL_IDS, *(f"alias-{m}" for m in MODEL_IDS), "ghost")


@st.composite
def route_cases(draw: st.DrawFn) -> tuple[FleetView, Catalogue, str, str, dict[str, int]]:
    """A fleet, a catalogue, a requested name, a strategy and some measured sizes."""
    measured = draw(
        st.dictionaries(st.sampled_from(MODEL_IDS), st.integers(0, 40).map(lambda mb: mb * 500))
    )
    strategy = draw(st.sampled_from(("lru", "priority")))
    catalogue = draw(catalogues())
    listed = [name for m in catalogue.models for name in (m.id, *m.aliases)]
    name = draw(st.sampled_from(listed) if draw(st.integers(0, 3)) else st.sampled_from(NAMES))
    return draw(fleets()), catalogue, name, strategy, measured
