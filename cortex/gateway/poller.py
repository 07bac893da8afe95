"""Polling every neuron for discovery, health and models, concurrently.

I/O: HTTP GETs, each bounded by ``POLL_TIMEOUT_S`` so one slow or dead neuron
costs one timeout per sweep and never delays the others. Discovery is fetched
again when a neuron restarts (its ``instance_id`` changes or its uptime drops).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

import attrs

from cortex.core import wire
from cortex.core.observe import observe_failure, observe_poll
from cortex.errors import ApiError
from cortex.gateway.client import NeuronClient
from cortex.gateway.store import FleetStore

log = logging.getLogger("cortex.gateway.poller")

POLL_TIMEOUT_S = 5.0  # a healthy neuron answers /health in milliseconds


async def poll_node(
    store: FleetStore, client: NeuronClient, unhealthy_after: int, timeout: float
) -> bool:
    """Poll one neuron; returns True when it (re)appeared with a new instance."""
    name = client.name
    before = store.view.node(name)
    was_healthy = before is not None and before.healthy
    acts = store.acts.get(name, 0)
    try:
        health = wire.decode(await client.get("/health", timeout), wire.Health)
        restarted = (
            name not in store.discoveries
            or health.instance_id != store.instances.get(name)
            or health.uptime_s < store.uptimes.get(name, 0.0)
        )
        if restarted:
            store.discoveries[name] = wire.decode(
                await client.get("/discovery", timeout), wire.Discovery
            )
            store.forget_endpoints(name)
        raw_models = await client.get("/models", timeout)
        models = [wire.decode(m, wire.ModelStatus) for m in raw_models or []]
    except (ApiError, wire.WireError) as exc:
        store.failures[name] = store.failures.get(name, 0) + 1
        node = store.update(
            name, lambda n: observe_failure(n, store.failures[name], unhealthy_after)
        )
        if was_healthy and node is not None and not node.healthy:
            log.warning(
                "neuron %s is down after %d failed polls: %s", name, store.failures[name], exc
            )
            store.forget_endpoints(name)
        return False
    if not was_healthy:
        log.info("neuron %s is up", name)
    store.failures[name] = 0
    store.instances[name] = health.instance_id
    store.uptimes[name] = health.uptime_s
    for model in models:
        if model.status == "loaded" and model.vram_used_mb:
            store.measured_mb[model.id] = model.vram_used_mb
    counts: Mapping[str, tuple[int, int]] = store.counts.get(name, {})
    discovery = store.discoveries[name]
    if store.acts.get(name, 0) != acts and not restarted:
        # A load or unload of ours changed the node while we asked: this answer may
        # predate it (a model we just loaded reported "loading"). The next poll is fresh.
        store.update(name, lambda n: n if n.healthy else attrs.evolve(n, healthy=True))
        return restarted
    store.update(
        name,
        lambda n: observe_poll(n, discovery, health, models, now=time.monotonic(), counts=counts),
    )
    return restarted


async def poll_once(
    store: FleetStore, clients: Mapping[str, NeuronClient], unhealthy_after: int, timeout: float
) -> list[str]:
    """One sweep over all neurons; returns the names of those that (re)started."""
    results = await asyncio.gather(
        *(poll_node(store, c, unhealthy_after, timeout) for c in clients.values())
    )
    return [name for name, restarted in zip(clients, results, strict=True) if restarted]
