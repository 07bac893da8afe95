"""Swap-aware decisions: when a request should wait for room, and load bookkeeping. Pure."""

from __future__ import annotations

from cortex.core.catalogue import Catalogue
from cortex.core.config import ModelConfig
from cortex.core.eviction import pinned_retry_due
from cortex.core.fleet import LOADED, LOADING, DeviceView, FleetView, ModelOnNode, NodeView
from cortex.core.observe import drop_model, set_status
from cortex.core.router import EvictThenLoad, Reject, route


def fleet(*models: ModelOnNode) -> FleetView:
    device = DeviceView(0, "gpu0", 1000, 1000 - sum(m.vram_used_mb for m in models))
    return FleetView((NodeView("n1", "http://n1", True, (device,), models),))


def catalogue(pinned: bool = False) -> Catalogue:
    return Catalogue(
        (
            ModelConfig(id="x", vram_mb=600, pinned_on=("n1",) if pinned else ()),
            ModelConfig(id="y", vram_mb=600),
        )
    )


def test_busy_model_in_the_way_means_wait_for_room() -> None:
    """A model that fits once a busy, unpinned one goes idle is told to wait, not refused."""
    busy = ModelOnNode("x", vram_used_mb=600, devices=(0,), in_flight=1)
    decision = route(fleet(busy), catalogue(), "y", 0.0)
    assert isinstance(decision, Reject) and decision.wait and decision.status == 503


def test_model_still_loading_is_waited_for_and_then_evicted() -> None:
    """A load in progress delays a swap; once idle and loaded the model is evicted."""
    loading = ModelOnNode("x", status=LOADING, vram_used_mb=600, devices=(0,), pending=2)
    decision = route(fleet(loading), catalogue(), "y", 0.0)
    assert isinstance(decision, Reject) and decision.wait
    idle = ModelOnNode("x", status=LOADED, vram_used_mb=600, devices=(0,))
    assert route(fleet(idle), catalogue(), "y", 0.0) == EvictThenLoad("n1", "y", ("x",))


def test_pinned_model_in_the_way_means_no_wait() -> None:
    """Waiting on a pinned model is pointless: the answer is an immediate 503."""
    pinned = ModelOnNode("x", vram_used_mb=600, devices=(0,), in_flight=1)
    decision = route(fleet(pinned), catalogue(pinned=True), "y", 0.0)
    assert isinstance(decision, Reject) and not decision.wait
    assert "cannot be evicted" in decision.message


def test_loaded_at_is_stamped_when_the_model_becomes_loaded() -> None:
    """loaded_at is when the load finished, not when it began."""
    node = fleet().nodes[0]
    node = set_status(node, "x", LOADING, 10.0, 600)
    assert node.model("x") == ModelOnNode("x", LOADING, 600, (0,))
    node = set_status(node, "x", LOADED, 25.0, 600)
    entry = node.model("x")
    assert entry is not None and entry.loaded_at == 25.0


def test_reserved_memory_is_not_lost_while_victims_still_hold_theirs() -> None:
    """A load reserved before its victim leaves keeps the debt: free memory ends exact."""
    node = fleet(ModelOnNode("x", vram_used_mb=600, devices=(0,))).nodes[0]
    node = set_status(node, "y", LOADING, 0.0, 600)  # 400 free - 600 reserved
    node = drop_model(node, "x")
    assert node.devices[0].vram_free_mb == 400


def test_pinned_retries_back_off() -> None:
    """A failing pinned load waits 5 s, then 10, 20 ... capped at five minutes."""
    assert pinned_retry_due(0, 0.0, 0.0)
    assert not pinned_retry_due(1, 100.0, 104.0) and pinned_retry_due(1, 100.0, 105.0)
    assert not pinned_retry_due(3, 100.0, 119.0) and pinned_retry_due(3, 100.0, 120.0)
    assert not pinned_retry_due(50, 100.0, 399.0) and pinned_retry_due(50, 100.0, 400.0)
