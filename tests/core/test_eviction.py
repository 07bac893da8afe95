"""Eviction, idle-unload, pinned-load and defrag plans: properties and examples."""

from __future__ import annotations

import itertools

from hypothesis import given, settings

from cortex.core.catalogue import Catalogue
from cortex.core.config import ModelConfig
from cortex.core.eviction import (
    plan_defrag,
    plan_eviction,
    plan_idle_unloads,
    plan_pinned_loads,
)
from cortex.core.fleet import LOADED, LOADING, UNLOADING, DeviceView, FleetView, ModelOnNode
from cortex.core.fleet import NodeView as Node
from tests.core.fleetgen import eviction_cases, truly_fits, truth_free

PROPERTY = settings(max_examples=150, deadline=None)


def catalogue_priority(catalogue: Catalogue, model_id: str) -> int:
    profile = catalogue.get(model_id)
    return profile.priority if profile is not None else 0


def may_evict(node: Node, catalogue: Catalogue, model: ModelOnNode) -> bool:
    """The oracle's own reading of the rule: loaded, idle, not pinned here."""
    profile = catalogue.get(model.id)
    pinned = profile is not None and node.name in profile.pinned_on
    idle = model.in_flight == 0 and model.queued == 0 and model.pending == 0
    return model.status == LOADED and idle and not pinned


def gpu(index: int, total: int, free: int) -> DeviceView:
    return DeviceView(index, f"gpu{index}", total, free)


def node_of(*models: ModelOnNode, devices: tuple[DeviceView, ...] = (), name: str = "n") -> Node:
    return Node(name, f"http://{name}:1", True, devices or (gpu(0, 24000, 0),), models)


def cat(*profiles: ModelConfig) -> Catalogue:
    return Catalogue(profiles)


NEW = ModelConfig(id="new", vram_mb=8000)


@PROPERTY
@given(eviction_cases())
def test_victims_are_loaded_idle_and_unpinned(
    case: tuple[Node, Catalogue, ModelConfig, int, str],
) -> None:
    """Victims are always loaded, idle and not pinned on the node."""
    node, catalogue, profile, need, strategy = case
    victims = plan_eviction(node, catalogue, profile, need, strategy, 100.0)
    for victim in victims or ():
        entry = node.model(victim)
        assert entry is not None
        assert may_evict(node, catalogue, entry)


@PROPERTY
@given(eviction_cases())
def test_the_model_fits_after_the_eviction(
    case: tuple[Node, Catalogue, ModelConfig, int, str],
) -> None:
    """After the victims go, the model fits without exceeding any device's memory."""
    node, catalogue, profile, need, strategy = case
    victims = plan_eviction(node, catalogue, profile, need, strategy, 100.0)
    if victims is not None:
        assert len(set(victims)) == len(victims)
        assert truly_fits(node, profile, need, truth_free(node, victims))


@PROPERTY
@given(eviction_cases())
def test_a_plan_exists_whenever_some_subset_frees_enough(
    case: tuple[Node, Catalogue, ModelConfig, int, str],
) -> None:
    """Brute force over subsets: if any allowed set of victims makes room, a plan is found."""
    node, catalogue, profile, need, strategy = case
    allowed = [m.id for m in node.models if may_evict(node, catalogue, m)]
    if strategy == "priority":
        allowed = [m for m in allowed if catalogue_priority(catalogue, m) <= profile.priority]
    subsets = itertools.chain.from_iterable(
        itertools.combinations(allowed, r) for r in range(len(allowed) + 1)
    )
    possible = any(truly_fits(node, profile, need, truth_free(node, s)) for s in subsets)
    victims = plan_eviction(node, catalogue, profile, need, strategy, 100.0)
    assert (victims is not None) == possible


@PROPERTY
@given(eviction_cases())
def test_every_victim_is_needed(case: tuple[Node, Catalogue, ModelConfig, int, str]) -> None:
    """Sparing any one victim leaves too little room: no unnecessary evictions."""
    node, catalogue, profile, need, strategy = case
    victims = plan_eviction(node, catalogue, profile, need, strategy, 100.0) or ()
    for spared in victims:
        rest = [v for v in victims if v != spared]
        assert not truly_fits(node, profile, need, truth_free(node, rest))


@PROPERTY
@given(eviction_cases())
def test_priority_never_evicts_a_higher_priority_model(
    case: tuple[Node, Catalogue, ModelConfig, int, str],
) -> None:
    """The priority strategy never evicts a model of higher priority than the new one."""
    node, catalogue, profile, need, _ = case
    victims = plan_eviction(node, catalogue, profile, need, "priority", 100.0) or ()
    assert all(catalogue_priority(catalogue, v) <= profile.priority for v in victims)


@PROPERTY
@given(eviction_cases())
def test_the_plan_is_deterministic(case: tuple[Node, Catalogue, ModelConfig, int, str]) -> None:
    """The same node gives the same plan, whatever order its models are listed in."""
    node, catalogue, profile, need, strategy = case
    first = plan_eviction(node, catalogue, profile, need, strategy, 100.0)
    flipped = Node(node.name, node.endpoint, node.healthy, node.devices, node.models[::-1])
    assert plan_eviction(node, catalogue, profile, need, strategy, 100.0) == first
    assert plan_eviction(flipped, catalogue, profile, need, strategy, 100.0) == first


def test_nothing_is_evicted_when_the_model_fits() -> None:
    """A model that fits in free memory needs no victims."""
    node = node_of(ModelOnNode("old", vram_used_mb=8000), devices=(gpu(0, 24000, 16000),))
    assert plan_eviction(node, cat(), NEW, 8000, "lru", 0.0) == ()


def test_lru_evicts_the_least_recently_used_first() -> None:
    """LRU unloads the model used longest ago and stops once the new one fits."""
    node = node_of(
        ModelOnNode("recent", vram_used_mb=8000, last_used=30.0),
        ModelOnNode("oldest", vram_used_mb=8000, last_used=10.0),
        ModelOnNode("middle", vram_used_mb=8000, last_used=20.0),
    )
    assert plan_eviction(node, cat(), NEW, 8000, "lru", 50.0) == ("oldest",)
    assert plan_eviction(node, cat(), NEW, 16000, "lru", 50.0) == ("oldest", "middle")


def test_lru_ties_break_by_load_time_then_id() -> None:
    """Models never used go first, oldest load first, then by id."""
    node = node_of(
        ModelOnNode("b", vram_used_mb=8000, loaded_at=5.0),
        ModelOnNode("a", vram_used_mb=8000, loaded_at=5.0),
        ModelOnNode("c", vram_used_mb=8000, loaded_at=1.0),
    )
    assert plan_eviction(node, cat(), NEW, 16000, "lru", 50.0) == ("c", "a")


def test_a_victim_that_frees_the_wrong_device_is_spared() -> None:
    """A model whose eviction turns out unneeded stays loaded."""
    node = node_of(
        ModelOnNode("old", vram_used_mb=10000, devices=(0,), last_used=1.0),
        ModelOnNode("newer", vram_used_mb=16000, devices=(1,), last_used=2.0),
        devices=(gpu(0, 16000, 0), gpu(1, 16000, 0)),
    )
    assert plan_eviction(node, cat(), NEW, 12000, "lru", 5.0) == ("newer",)


def test_priority_evicts_lowest_priority_first() -> None:
    """The priority strategy unloads low priority before recently unused high priority."""
    catalogue = cat(ModelConfig(id="low", priority=0), ModelConfig(id="high", priority=5))
    node = node_of(
        ModelOnNode("high", vram_used_mb=12000, last_used=1.0),
        ModelOnNode("low", vram_used_mb=12000, last_used=9.0),
    )
    new = ModelConfig(id="new", priority=5)
    assert plan_eviction(node, catalogue, new, 8000, "priority", 10.0) == ("low",)
    assert plan_eviction(node, catalogue, new, 8000, "lru", 10.0) == ("high",)


def test_priority_never_evicts_higher_priority() -> None:
    """A low-priority model cannot push out a higher-priority one."""
    catalogue = cat(ModelConfig(id="high", priority=5))
    node = node_of(ModelOnNode("high", vram_used_mb=24000))
    assert (
        plan_eviction(node, catalogue, ModelConfig(id="new", priority=1), 8000, "priority", 0)
        is None
    )


def test_pinned_busy_and_changing_models_are_never_evicted() -> None:
    """Pinned, busy, pending, loading and unloading models stay; nothing else frees room."""
    catalogue = cat(ModelConfig(id="pinned", pinned_on=("n",)))
    node = node_of(
        ModelOnNode("pinned", vram_used_mb=4000),
        ModelOnNode("serving", vram_used_mb=4000, in_flight=1),
        ModelOnNode("queued", vram_used_mb=4000, queued=1),
        ModelOnNode("pending", vram_used_mb=4000, pending=1),
        ModelOnNode("loading", status=LOADING, vram_used_mb=4000),
        ModelOnNode("unloading", status=UNLOADING, vram_used_mb=4000),
    )
    assert plan_eviction(node, catalogue, NEW, 4000, "lru", 0.0) is None


def test_a_model_pinned_elsewhere_may_be_evicted_here() -> None:
    """pinned_on protects a model only on the nodes it names."""
    catalogue = cat(ModelConfig(id="pinned", pinned_on=("other",)))
    node = node_of(ModelOnNode("pinned", vram_used_mb=24000))
    assert plan_eviction(node, catalogue, NEW, 8000, "lru", 0.0) == ("pinned",)


def test_unknown_devices_free_the_fullest_device() -> None:
    """A victim that reports no devices is credited to the device with least free memory."""
    node = node_of(
        ModelOnNode("vague", vram_used_mb=10000),
        devices=(gpu(0, 16000, 6000), gpu(1, 16000, 2000)),
    )
    assert plan_eviction(node, cat(), NEW, 12000, "lru", 0.0) == ("vague",)
    assert plan_eviction(node, cat(), NEW, 14000, "lru", 0.0) is None


def test_multi_device_models_need_room_on_each_device() -> None:
    """A two-device model needs half its memory free on each of two devices."""
    node = node_of(
        ModelOnNode("left", vram_used_mb=8000, devices=(0,), last_used=1.0),
        ModelOnNode("right", vram_used_mb=8000, devices=(1,), last_used=2.0),
        devices=(gpu(0, 8000, 0), gpu(1, 8000, 0)),
    )
    pair = ModelConfig(id="new", min_devices=2)
    assert plan_eviction(node, cat(), pair, 16000, "lru", 0.0) == ("left", "right")
    assert plan_eviction(node, cat(), pair, 16002, "lru", 0.0) is None


def test_idle_unloads_pick_models_unused_long_enough() -> None:
    """Idle models go after idle_unload_s; pinned, busy and fresh ones stay."""
    catalogue = cat(ModelConfig(id="pinned", pinned_on=("n",)))
    node = node_of(
        ModelOnNode("stale", last_used=10.0),
        ModelOnNode("never-used", loaded_at=15.0),
        ModelOnNode("fresh", last_used=95.0),
        ModelOnNode("pinned", last_used=1.0),
        ModelOnNode("busy", last_used=1.0, in_flight=1),
        ModelOnNode("unknown-age"),
    )
    down = node_of(ModelOnNode("stale", last_used=1.0), name="down")
    fleet = FleetView((node, Node("down", "", False, down.devices, down.models)))
    assert plan_idle_unloads(fleet, catalogue, 60.0, 100.0) == (("n", "never-used"), ("n", "stale"))
    assert plan_idle_unloads(fleet, catalogue, 0, 100.0) == ()


def test_pinned_loads_list_missing_pinned_models() -> None:
    """Pinned models absent from a healthy feasible node are due for loading there."""
    catalogue = cat(
        ModelConfig(id="low", pinned_on=("n", "down")),
        ModelConfig(id="high", pinned_on=("n",), priority=3),
        ModelConfig(id="present", pinned_on=("n",)),
        ModelConfig(id="too-big", pinned_on=("n",), min_devices=2),
        ModelConfig(id="free"),
    )
    node = node_of(ModelOnNode("present"))
    fleet = FleetView((node, Node("down", "", False, node.devices)))
    assert plan_pinned_loads(fleet, catalogue) == (("n", "high"), ("n", "low"))


def test_defrag_is_due_after_enough_evictions_on_a_quiet_node() -> None:
    """Defrag lists resident models highest priority first once the node is quiet."""
    catalogue = cat(ModelConfig(id="b", priority=2), ModelConfig(id="a", priority=2))
    quiet = Node(
        "n",
        "",
        True,
        (gpu(0, 24000, 0),),
        (
            ModelOnNode("z"),
            ModelOnNode("b"),
            ModelOnNode("a"),
        ),
        evictions_since_defrag=3,
    )
    assert plan_defrag(quiet, catalogue, 3) == ("a", "b", "z")
    assert plan_defrag(quiet, catalogue, 4) is None
    assert plan_defrag(quiet, catalogue, 0) is None
    busy = Node("n", "", True, quiet.devices, (ModelOnNode("a", queued=1),), 5)
    assert plan_defrag(busy, catalogue, 3) is None
