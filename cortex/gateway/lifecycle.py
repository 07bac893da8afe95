"""Carrying out the router's decisions: loads, evictions, unloads on neurons.

I/O: POSTs to neurons' ``/models/load`` and ``/models/unload``. ``start_load`` and
``start_unload`` are synchronous on purpose: the shell calls them right after a
pure decision with no await in between, so the snapshot marks the model
``loading`` (memory reserved) or ``unloading`` before any other request can route,
and every later caller joins the same task. Every unload is logged with its reason
(``pressure``, ``idle``, ``defrag``, ``admin``) and reported through ``on_event``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from cortex.core.config import GatewayConfig, ModelConfig
from cortex.core.fleet import FAILED, LOADED, LOADING, UNLOADING
from cortex.core.observe import count_eviction, drop_model, set_status
from cortex.errors import ApiError, NotFound, UpstreamFailed, UpstreamTimeout
from cortex.gateway.client import NeuronClient
from cortex.gateway.store import FleetStore

log = logging.getLogger("cortex.gateway.lifecycle")

UNLOAD_TIMEOUT_S = 120.0  # the neuron drains in-flight requests (30 s) before freeing
WAIT_POLL_S = 0.1
# Unloads that count towards defrag_after_cycles: memory given up for another model.
EVICTION_REASONS = frozenset({"pressure", "idle"})

EventHook = Callable[[str, dict[str, Any]], None]


class Lifecycle:
    def __init__(
        self,
        store: FleetStore,
        clients: Mapping[str, NeuronClient],
        config: GatewayConfig,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.clients = clients
        self.config = config
        self.clock = clock
        self.on_event = on_event or (lambda kind, fields: None)
        self.loads: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.unloads: dict[tuple[str, str], asyncio.Task[None]] = {}
        # (node, model) -> (failed loads in a row, when the last failed): pinned back-off.
        self.failures: dict[tuple[str, str], tuple[int, float]] = {}

    def start_load(
        self, node: str, profile: ModelConfig, victims: tuple[str, ...] = ()
    ) -> asyncio.Task[None]:
        """Begin (or join) the load of ``profile`` on ``node``. Synchronous."""
        key = (node, profile.id)
        task = self.loads.get(key)
        if task is not None:
            return task
        need = self.store.measured_mb.get(profile.id, profile.vram_mb)
        now = self.clock()
        for victim in victims:
            self.store.act(node, partial(set_status, model_id=victim, status=UNLOADING, now=now))
        self.store.act(node, lambda n: set_status(n, profile.id, LOADING, now, need))
        task = asyncio.create_task(self._load(node, profile, victims))
        task.add_done_callback(_retrieved)
        self.loads[key] = task
        task.add_done_callback(lambda _: self.loads.pop(key, None))
        return task

    async def _load(self, node: str, profile: ModelConfig, victims: tuple[str, ...]) -> None:
        key = (node, profile.id)
        try:
            for victim in victims:
                await self.unload(node, victim, reason="pressure")
            started = self.clock()
            result = await self.clients[node].post(
                "/models/load", load_body(profile), timeout=self.config.gateway.load_timeout_s
            )
        except ApiError as exc:
            self.store.act(node, lambda n: set_status(n, profile.id, FAILED, self.clock()))
            failures = self.failures.get(key, (0, 0.0))[0] + 1
            self.failures[key] = (failures, self.clock())
            log.error("loading %s on %s failed: %s", profile.id, node, exc.message)
            raise
        self.failures.pop(key, None)
        vram = int(result.get("vram_used_mb", 0)) if isinstance(result, dict) else 0
        if vram:
            self.store.measured_mb[profile.id] = vram
        self.store.act(node, lambda n: set_status(n, profile.id, LOADED, self.clock(), vram))
        seconds = self.clock() - started
        log.info("loaded %s on %s in %.2f s (%d MB)", profile.id, node, seconds, vram)
        self.on_event("load", {"model": profile.id, "node": node, "seconds": seconds})

    def start_unload(self, node: str, model_id: str, reason: str) -> asyncio.Task[None]:
        """Begin (or join) the unload of ``model_id`` on ``node``. Synchronous."""
        key = (node, model_id)
        task = self.unloads.get(key)
        if task is not None:
            return task
        self.store.act(
            node, lambda n: set_status(n, model_id, UNLOADING, 0.0) if n.model(model_id) else n
        )
        task = asyncio.create_task(self._unload(node, model_id, reason))
        task.add_done_callback(_retrieved)
        self.unloads[key] = task
        task.add_done_callback(lambda _: self.unloads.pop(key, None))
        return task

    async def unload(self, node: str, model_id: str, reason: str) -> None:
        await asyncio.shield(self.start_unload(node, model_id, reason))

    async def _unload(self, node: str, model_id: str, reason: str) -> None:
        try:
            with contextlib.suppress(NotFound):  # already gone: the goal is reached
                await self.clients[node].post(
                    "/models/unload", {"model_id": model_id}, timeout=UNLOAD_TIMEOUT_S
                )
        except ApiError as exc:
            # The neuron's next poll says what is really resident.
            log.error("unloading %s on %s (%s) failed: %s", model_id, node, reason, exc.message)
            raise
        self.store.act(node, lambda n: drop_model(n, model_id))
        self.store.forget_endpoints(node, model_id)
        if reason in EVICTION_REASONS:
            self.store.update(node, count_eviction)
        log.info("unloaded %s on %s (reason: %s)", model_id, node, reason)
        self.on_event("unload", {"model": model_id, "node": node, "reason": reason})

    async def wait_loaded(self, node: str, model_id: str) -> None:
        """Wait for a load in progress on ``node``: ours (join the task) or one seen by poll."""
        task = self.loads.get((node, model_id))
        if task is not None:
            await asyncio.shield(task)
            return
        deadline = self.clock() + self.config.gateway.load_timeout_s
        while True:
            entry = (n := self.store.view.node(node)) and n.model(model_id)
            if not entry or entry.status in (FAILED, UNLOADING):
                raise UpstreamFailed(f"the load of {model_id!r} on {node} did not complete")
            if entry.status == LOADED:
                return
            if self.clock() > deadline:
                raise UpstreamTimeout(f"the load of {model_id!r} on {node} timed out")
            await asyncio.sleep(WAIT_POLL_S)


def load_body(profile: ModelConfig) -> dict[str, Any]:
    """The neuron's load request for a catalogue profile (SPEC 2: vram_mb in options)."""
    options = dict(profile.options)
    options["vram_mb"] = profile.vram_mb
    if profile.context_length:
        options.setdefault("context_length", profile.context_length)
    return {
        "model_id": profile.id,
        "source": profile.source_or_id,
        "harness": profile.harness,
        "options": options,
    }


def _retrieved(task: asyncio.Task[None]) -> None:
    """Mark a failure as seen: it is logged where it happens, and joiners get it too."""
    if not task.cancelled():
        task.exception()
