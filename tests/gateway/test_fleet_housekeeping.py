"""Housekeeping rounds driven with a fake clock: idle unloads, defrag, pinned back-off."""

from __future__ import annotations

import time

from cortex.core.config import EvictionSection
from cortex.core.fleet import NodeView
from cortex.gateway.housekeeping import Chores, housekeep_once
from tests.fleet import (
    RunningGateway,
    chat,
    eventually,
    http,
    load_count,
    resident,
    sample,
    start_gateway,
    start_neuron,
)


def node(gw: RunningGateway) -> NodeView:
    view = gw.state.store.view.node("n1")
    assert view is not None
    return view


async def test_idle_model_is_unloaded_after_idle_unload_s_but_a_pinned_one_stays() -> None:
    """A model unused for idle_unload_s is unloaded; a pinned model is not."""
    models = (
        '[[models]]\nid = "pin"\nharness = "echo"\nvram_mb = 100\npinned_on = ["n1"]\n'
        '[[models]]\nid = "m"\nharness = "echo"\nvram_mb = 100\n'
    )
    eviction = EvictionSection(idle_unload_s=60)
    async with (
        start_neuron("n1", vram_mb=[1000]) as n1,
        start_gateway([n1], models, eviction=eviction) as gw,
        http() as session,
    ):
        assert (await chat(session, gw, "m"))[0] == 200
        await eventually(lambda: resident(n1) == {"pin", "m"}, "both models to load")
        now = time.monotonic()
        assert await housekeep_once(gw.state, now + 30) == Chores()
        chores = await housekeep_once(gw.state, now + 120)
        assert chores.idle == (("n1", "m"),)
        assert resident(n1) == {"pin"}
        assert sample(gw, "cortex_evictions_total", model="m", node="n1", reason="idle") == 1


async def test_defrag_after_n_evictions_reloads_resident_models() -> None:
    """After defrag_after_cycles evictions an idle node's models are unloaded and reloaded."""
    models = "".join(
        f'[[models]]\nid = "{m}"\nharness = "echo"\nvram_mb = 600\n' for m in ("a", "b", "c")
    )
    eviction = EvictionSection(defrag_after_cycles=2)
    async with (
        start_neuron("n1", vram_mb=[1000]) as n1,
        start_gateway([n1], models, eviction=eviction) as gw,
        http() as session,
    ):
        for model in ("a", "b", "c"):  # b evicts a, c evicts b
            assert (await chat(session, gw, model))[0] == 200
        assert node(gw).evictions_since_defrag == 2
        chores = await housekeep_once(gw.state, time.monotonic())
        assert chores.defrags == ("n1",)
        assert resident(n1) == {"c"}
        assert load_count(n1, "c") == 2
        assert node(gw).evictions_since_defrag == 0
        assert sample(gw, "cortex_defrags_total", node="n1") == 1
        assert sample(gw, "cortex_evictions_total", model="c", node="n1", reason="defrag") == 1
        assert (await housekeep_once(gw.state, time.monotonic())).defrags == ()


async def test_failing_pinned_load_is_retried_with_back_off() -> None:
    """A pinned model whose load fails is not retried in a tight loop, but is retried later."""
    models = '[[models]]\nid = "broken"\nharness = "no-such-harness"\npinned_on = ["n1"]\n'
    async with start_neuron("n1", vram_mb=[1000]) as n1, start_gateway([n1], models) as gw:
        failures = gw.state.lifecycle.failures
        # The gateway tries once as soon as the node is up.
        await eventually(lambda: ("n1", "broken") in failures, "the first attempt to fail")
        count, failed_at = failures["n1", "broken"]
        assert count == 1
        assert (await housekeep_once(gw.state, failed_at + 1)).pinned == ()
        assert (await housekeep_once(gw.state, failed_at + 6)).pinned == (("n1", "broken"),)
        await eventually(lambda: failures["n1", "broken"][0] == 2, "the retry to fail")
