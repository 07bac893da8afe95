"""The router (SPEC 3.2): properties over random fleets, and one example per step."""

from __future__ import annotations

import itertools

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from cortex.core.catalogue import Catalogue, is_feasible
from cortex.core.config import ModelConfig
from cortex.core.eviction import plan_eviction
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
from cortex.core.router import EvictThenLoad, Load, Reject, Serve, fits, route
from tests.core.fleetgen import eviction_cases, route_cases, truly_fits, truth_free

PROPERTY = settings(max_examples=200, deadline=None)
Case = tuple[FleetView, Catalogue, str, str, dict[str, int]]


def decide(case: Case, fleet: FleetView | None = None, name: str | None = None) -> object:
    base, catalogue, requested, strategy, measured = case
    return route(
        fleet or base, catalogue, name or requested, 0.0, strategy=strategy, measured_mb=measured
    )


def need_of(profile: ModelConfig, measured: dict[str, int]) -> int:
    return measured.get(profile.id, profile.vram_mb)


def allowed_victims(
    node: NodeView, catalogue: Catalogue, profile: ModelConfig, strategy: str
) -> list[str]:
    """The oracle: loaded, idle, unpinned here and, for priority, not above the newcomer."""
    out = []
    for m in node.models:
        known = catalogue.get(m.id)
        pinned = known is not None and node.name in known.pinned_on
        priority = known.priority if known is not None else 0
        idle = m.in_flight == m.queued == m.pending == 0
        ranked_ok = strategy == "lru" or priority <= profile.priority
        if m.status == LOADED and idle and not pinned and m.id != profile.id and ranked_ok:
            out.append(m.id)
    return out


@PROPERTY
@given(route_cases())
def test_never_a_down_node(case: Case) -> None:
    """Every decision that names a node names a healthy one."""
    decision = decide(case)
    if isinstance(decision, Serve | Load | EvictThenLoad):
        node = case[0].node(decision.node)
        assert node is not None
        assert node.healthy


@PROPERTY
@given(route_cases())
def test_each_decision_is_sound(case: Case) -> None:
    """Serve hits a live replica; Load fits in free memory; evictions free enough safely."""
    fleet, catalogue, name, strategy, measured = case
    decision = decide(case)
    profile = catalogue.resolve(name)
    if isinstance(decision, Serve):
        entry = fleet.node(decision.node).model(decision.model_id)
        assert entry is not None
        assert entry.status in (LOADED, LOADING)
        return
    if not isinstance(decision, Load | EvictThenLoad):
        return
    assert profile is not None
    assert decision.model_id == profile.id
    node = fleet.node(decision.node)
    assert node is not None
    assert is_feasible(profile, node)
    victims = decision.victims if isinstance(decision, EvictThenLoad) else ()
    assert set(victims) <= set(allowed_victims(node, catalogue, profile, strategy))
    assert truly_fits(node, profile, need_of(profile, measured), truth_free(node, victims))


@PROPERTY
@given(route_cases())
def test_rejects_only_when_nothing_can_serve(case: Case) -> None:
    """A 503 means no healthy node has it or could make room for it, even by brute force."""
    fleet, catalogue, name, strategy, measured = case
    decision = decide(case)
    if not (isinstance(decision, Reject) and decision.status == 503):
        return
    assert decision.retry_after_s is not None
    profile = catalogue.resolve(name)
    if profile is None:
        return
    for node in fleet.healthy_nodes():
        entry = node.model(profile.id)
        assert entry is None or entry.status in (FAILED, UNLOADING)
        if entry is not None or not is_feasible(profile, node):
            continue
        allowed = allowed_victims(node, catalogue, profile, strategy)
        for r in range(len(allowed) + 1):
            for gone in itertools.combinations(allowed, r):
                free = truth_free(node, gone)
                assert not truly_fits(node, profile, need_of(profile, measured), free)


@PROPERTY
@given(route_cases())
def test_404_exactly_for_names_nobody_knows(case: Case) -> None:
    """Unknown names get a 404; anything in the catalogue or reported on a node does not."""
    fleet, catalogue, name, _, _ = case
    reported = any(m.id == name and m.status != FAILED for n in fleet.nodes for m in n.models)
    known = catalogue.resolve(name) is not None or reported
    decision = decide(case)
    assert (isinstance(decision, Reject) and decision.status == 404) == (not known)


@PROPERTY
@given(route_cases(), st.randoms(use_true_random=False))
def test_same_input_same_decision(case: Case, rng: object) -> None:
    """The decision depends on the snapshot only, not on the order nodes are listed in."""
    nodes = list(case[0].nodes)
    rng.shuffle(nodes)
    first = decide(case)
    assert decide(case) == first
    assert decide(case, fleet=FleetView(tuple(nodes))) == first


@PROPERTY
@given(route_cases())
def test_aliases_route_like_ids(case: Case) -> None:
    """A request by alias gets the same decision as one by the model's id."""
    catalogue = case[1]
    for profile in catalogue.models:
        for alias in profile.aliases:
            assert decide(case, name=alias) == decide(case, name=profile.id)


@PROPERTY
@given(eviction_cases())
def test_a_lone_full_node_is_made_room_on(
    case: tuple[NodeView, Catalogue, ModelConfig, int, str],
) -> None:
    """On one healthy node the router loads, evicts exactly the planned victims, or refuses."""
    node, catalogue, profile, need, strategy = case
    healthy = attrs.evolve(node, healthy=True)
    newcomer = attrs.evolve(profile, pinned_on=())
    with_new = Catalogue((*catalogue.models, newcomer))
    decision = route(
        FleetView((healthy,)), with_new, "new", 0.0, strategy=strategy, measured_mb={"new": need}
    )
    victims = plan_eviction(healthy, with_new, newcomer, need, strategy, 0.0)
    if victims is None:
        assert isinstance(decision, Reject)
    elif victims:
        assert decision == EvictThenLoad(node.name, "new", victims)
    else:
        assert decision == Load(node.name, "new")


def gpu(index: int, total: int, free: int) -> DeviceView:
    return DeviceView(index, f"gpu{index}", total, free)


def node(
    name: str, *models: ModelOnNode, free: int = 16000, total: int = 16000, healthy: bool = True
) -> NodeView:
    return NodeView(name, f"http://{name}:13131", healthy, (gpu(0, total, free),), models)


CATALOGUE = Catalogue(
    (
        ModelConfig(id="small", aliases=("tiny",), vram_mb=4000),
        ModelConfig(id="big", vram_mb=24000),
        ModelConfig(id="mid", vram_mb=8000, priority=1),
    )
)


def test_unknown_model_is_404_listing_known_models() -> None:
    """An unknown name is a 404 that names it and lists what exists."""
    fleet = FleetView((node("a", ModelOnNode("adhoc", vram_used_mb=1000), free=15000),))
    decision = route(fleet, CATALOGUE, "nope", 0.0)
    assert isinstance(decision, Reject)
    assert decision.status == 404
    assert "'nope'" in decision.message
    assert "adhoc, big, mid, small" in decision.message


def test_404_list_is_capped() -> None:
    """A long catalogue is listed in part, saying how many more exist."""
    many = Catalogue(tuple(ModelConfig(id=f"m{i:02}") for i in range(30)))
    decision = route(FleetView(), many, "nope", 0.0)
    assert isinstance(decision, Reject)
    assert "(and 10 more)" in decision.message


def test_loaded_replica_with_least_load_serves() -> None:
    """Among loaded replicas the one with fewest in-flight plus queued requests wins."""
    fleet = FleetView(
        (
            node("a", ModelOnNode("small", in_flight=2, queued=1)),
            node("b", ModelOnNode("small", in_flight=1, queued=1)),
            node("c", ModelOnNode("small", in_flight=2)),
            node("d", ModelOnNode("small"), healthy=False),
        )
    )
    assert route(fleet, CATALOGUE, "tiny", 0.0) == Serve("b", "small")


def test_ties_between_replicas_break_by_name() -> None:
    """Equally loaded replicas are chosen by node name."""
    fleet = FleetView((node("b", ModelOnNode("small")), node("a", ModelOnNode("small"))))
    assert route(fleet, CATALOGUE, "small", 0.0) == Serve("a", "small")


def test_a_load_in_progress_is_joined() -> None:
    """A model being loaded is served from that node, never loaded a second time."""
    fleet = FleetView((node("a"), node("b", ModelOnNode("small", status=LOADING), free=12000)))
    assert route(fleet, CATALOGUE, "small", 0.0) == Serve("b", "small")


def test_fits_in_free_memory_on_the_roomiest_node() -> None:
    """A cold model loads where it fits in free memory, most free memory first."""
    fleet = FleetView((node("a", free=6000), node("b", free=9000), node("c", free=9000)))
    assert route(fleet, CATALOGUE, "mid", 0.0) == Load("b", "mid")


def test_free_memory_beats_eviction() -> None:
    """A node where the model fits already is preferred to one that must evict."""
    full = node("a", ModelOnNode("small", vram_used_mb=16000), free=0, total=16000)
    fleet = FleetView((full, node("b", free=8000, total=8000)))
    assert route(fleet, CATALOGUE, "mid", 0.0) == Load("b", "mid")


def test_evicts_least_recently_used() -> None:
    """When nothing fits, the least recently used idle model makes room."""
    busy_free = node(
        "a",
        ModelOnNode("old", vram_used_mb=8000, last_used=1.0),
        ModelOnNode("new", vram_used_mb=8000, last_used=9.0),
        free=0,
    )
    decision = route(FleetView((busy_free,)), CATALOGUE, "mid", 10.0)
    assert decision == EvictThenLoad("a", "mid", ("old",))


def test_evicts_by_priority() -> None:
    """The priority strategy evicts the lowest priority first and never a higher one."""
    catalogue = Catalogue((*CATALOGUE.models, ModelConfig(id="vip", priority=9)))
    full = node(
        "a",
        ModelOnNode("vip", vram_used_mb=8000, last_used=1.0),
        ModelOnNode("small", vram_used_mb=8000, last_used=9.0),
        free=0,
    )
    fleet = FleetView((full,))
    assert route(fleet, catalogue, "mid", 10.0, strategy="priority") == EvictThenLoad(
        "a", "mid", ("small",)
    )
    assert route(fleet, catalogue, "mid", 10.0, strategy="lru") == EvictThenLoad(
        "a", "mid", ("vip",)
    )
    refused = route(fleet, catalogue, "big", 10.0, strategy="priority")
    assert isinstance(refused, Reject)
    assert refused.status == 503


def test_503_says_what_it_needs_and_what_the_best_node_has() -> None:
    """Nothing fits: the 503 names the need and the best node's free and total memory."""
    fleet = FleetView((node("beast", free=8000), node("runt", free=2000, total=4000)))
    decision = route(fleet, CATALOGUE, "big", 0.0)
    assert isinstance(decision, Reject)
    assert decision.status == 503
    assert decision.message.startswith(
        "model 'big' needs 24000 MB on 1 device(s); best node 'beast' has 8000 MB free of 16000 MB"
    )
    assert decision.retry_after_s is not None


def test_503_when_no_node_is_healthy() -> None:
    """With every node down the 503 says so."""
    decision = route(FleetView((node("a", healthy=False),)), CATALOGUE, "small", 0.0)
    assert isinstance(decision, Reject)
    assert decision.status == 503
    assert "no healthy node (0 of 1)" in decision.message


def test_pinned_on_restricts_placement() -> None:
    """A model with pinned_on is placed only on the nodes it names."""
    catalogue = Catalogue((ModelConfig(id="p", vram_mb=1000, pinned_on=("b",)),))
    fleet = FleetView((node("a"), node("b", free=4000)))
    assert route(fleet, catalogue, "p", 0.0) == Load("b", "p")
    down = FleetView((node("a"), node("b", healthy=False)))
    refused = route(down, catalogue, "p", 0.0)
    assert isinstance(refused, Reject)
    assert "pinned_on: b" in refused.message


def test_failed_entries_neither_serve_nor_block() -> None:
    """A failed entry is not a replica and does not stop a fresh load there."""
    fleet = FleetView((node("a", ModelOnNode("small", status=FAILED)),))
    assert route(fleet, CATALOGUE, "small", 0.0) == Load("a", "small")


def test_a_model_outside_the_catalogue_is_served_where_loaded() -> None:
    """A model a neuron reports loaded is served there even if the catalogue lacks it."""
    fleet = FleetView((node("a"), node("b", ModelOnNode("adhoc", vram_used_mb=2000))))
    assert route(fleet, CATALOGUE, "adhoc", 0.0) == Serve("b", "adhoc")
    gone = FleetView((node("a"), node("b", ModelOnNode("adhoc"), healthy=False)))
    refused = route(gone, CATALOGUE, "adhoc", 0.0)
    assert isinstance(refused, Reject)
    assert refused.status == 503


def test_measured_size_replaces_the_estimate() -> None:
    """Once measured, a model's real size decides where it fits."""
    fleet = FleetView((node("a", free=6000),))
    assert route(fleet, CATALOGUE, "mid", 0.0) != Load("a", "mid")
    assert route(fleet, CATALOGUE, "mid", 0.0, measured_mb={"mid": 5000}) == Load("a", "mid")


def test_fits_chooses_the_roomiest_eligible_devices() -> None:
    """fits() picks k large-enough devices with the most free memory, or None."""
    box = NodeView("n", "", True, (gpu(0, 8000, 8000), gpu(1, 24000, 10000), gpu(2, 24000, 20000)))
    pair = ModelConfig(id="x", min_devices=2, min_device_vram_mb=16000)
    assert fits(box, pair, 20000) == (1, 2)
    assert fits(box, pair, 20002) is None
    assert fits(box, ModelConfig(id="y"), 8000) == (2,)
