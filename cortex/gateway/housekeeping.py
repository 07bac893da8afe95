"""Background chores on the fleet: pinned loads, idle unloads and defrag (SPEC 3.4, 3.4b).

I/O shell: carries out the pure plans of ``cortex.core.eviction`` through
``Lifecycle``. Each chore reads the snapshot and starts its loads or unloads in one
synchronous step, so what a plan saw idle is marked ``unloading`` before any request
can route to it. ``housekeep_once`` is what tests drive with a fake clock;
``housekeep_forever`` runs it every ``poll_interval_s`` (the snapshot changes no
faster), and the poll loop calls ``load_pinned`` after every sweep so a node that
(re)appears gets its pinned models at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable

import attrs

from cortex.core.eviction import (
    pinned_retry_due,
    plan_defrag,
    plan_eviction,
    plan_idle_unloads,
    plan_pinned_loads,
)
from cortex.core.fit import need_mb
from cortex.core.observe import count_eviction
from cortex.errors import ApiError
from cortex.gateway.state import GatewayState

log = logging.getLogger("cortex.gateway.housekeeping")


@attrs.frozen
class Chores:
    """What one round started: (node, model) loads and unloads, defragmented nodes."""

    pinned: tuple[tuple[str, str], ...] = ()
    idle: tuple[tuple[str, str], ...] = ()
    defrags: tuple[str, ...] = ()


def load_pinned(
    state: GatewayState, now: float, restarted: Iterable[str] = ()
) -> tuple[tuple[str, str], ...]:
    """Start the loads of pinned models missing from healthy nodes; returns what started.

    A pinned model evicts unpinned idle ones if it must (the configured strategy picks
    them). A load that failed, or found no room, is retried with back-off
    (``pinned_retry_due``); a node that restarted gets a fresh try at once.
    """
    store, lifecycle = state.store, state.lifecycle
    fresh = set(restarted)
    for key in [k for k in lifecycle.failures if k[0] in fresh]:
        del lifecycle.failures[key]
    started: list[tuple[str, str]] = []
    for name, model_id in plan_pinned_loads(store.view, store.catalogue):
        key = (name, model_id)
        failures, last = lifecycle.failures.get(key, (0, 0.0))
        if key in lifecycle.loads or not pinned_retry_due(failures, last, now):
            continue
        profile = store.catalogue.get(model_id)
        node = store.view.node(name)
        if profile is None or node is None:
            continue
        need = need_mb(profile, store.measured_mb)
        strategy = state.config.eviction.strategy
        victims = plan_eviction(node, store.catalogue, profile, need, strategy, now)
        if victims is None:
            lifecycle.failures[key] = (failures + 1, now)
            log.warning(
                "pinned model %s does not fit on %s now (needs %d MB; %d MB free); will retry",
                model_id, name, need, node.vram_free_mb,
            )  # fmt: skip
            continue
        log.info("loading pinned model %s on %s", model_id, name)
        lifecycle.start_load(name, profile, victims)
        started.append(key)
    return tuple(started)


def start_idle_unloads(
    state: GatewayState, now: float
) -> tuple[tuple[tuple[str, str], ...], list[asyncio.Task[None]]]:
    """Unload models unused for ``idle_unload_s``; returns the pairs and their tasks."""
    store = state.store
    pairs = plan_idle_unloads(store.view, store.catalogue, state.config.eviction.idle_unload_s, now)
    return pairs, [state.lifecycle.start_unload(node, model, "idle") for node, model in pairs]


def start_defrags(state: GatewayState) -> tuple[tuple[str, ...], list[Awaitable[None]]]:
    """Defragment every node due (SPEC 3.4b); returns the nodes and their work."""
    store = state.store
    after = state.config.eviction.defrag_after_cycles
    nodes: list[str] = []
    work: list[Awaitable[None]] = []
    for node in store.view.healthy_nodes():
        order = plan_defrag(node, store.catalogue, after)
        if order is None:
            continue
        store.update(node.name, lambda n: count_eviction(n, reset=True))
        # Only catalogue models can be reloaded faithfully; others stay where they are.
        known = tuple(m for m in order if store.catalogue.get(m) is not None)
        if not known:
            continue
        log.info("defragmenting %s: reloading %s", node.name, ", ".join(known))
        state.metrics.defragged(node.name)
        unloads = [state.lifecycle.start_unload(node.name, m, "defrag") for m in known]
        nodes.append(node.name)
        work.append(_reload(state, node.name, known, unloads))
    return tuple(nodes), work


async def _reload(
    state: GatewayState, node: str, order: tuple[str, ...], unloads: list[asyncio.Task[None]]
) -> None:
    """After the unloads, load the models back one at a time, highest priority first."""
    await asyncio.gather(*unloads, return_exceptions=True)
    for model_id in order:
        profile = state.store.catalogue.get(model_id)
        if profile is None:
            continue
        try:
            await asyncio.shield(state.lifecycle.start_load(node, profile))
        except ApiError as exc:
            log.warning("defrag of %s: reloading %s failed: %s", node, model_id, exc.message)


async def housekeep_once(state: GatewayState, now: float) -> Chores:
    """One round: start pinned loads, then finish idle unloads and due defrags."""
    pinned = load_pinned(state, now)
    idle, unloads = start_idle_unloads(state, now)
    defrags, work = start_defrags(state)
    for result in await asyncio.gather(*unloads, *work, return_exceptions=True):
        if isinstance(result, BaseException) and not isinstance(result, ApiError):
            raise result  # a bug, not a neuron's failure (those are logged where they happen)
    return Chores(pinned, idle, defrags)


async def housekeep_forever(state: GatewayState) -> None:
    interval = max(state.config.gateway.poll_interval_s, 0.5)
    while True:
        await asyncio.sleep(interval)
        await housekeep_once(state, time.monotonic())
