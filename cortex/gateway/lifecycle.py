"""Carrying out the router's decisions: loads, evictions, unloads on neurons.

I/O: POSTs to neurons' ``/models/load`` and ``/models/unload``. ``start`` is
synchronous on purpose: the shell calls it right after ``route()`` with no await
in between, so the snapshot marks the model ``loading`` (and its memory reserved)
before any other request can route, and every later request joins the same task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
import time
from collections.abc import Callable, Mapping
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
            self.store.update(node, partial(set_status, model_id=victim, status=UNLOADING, now=now))
        self.store.update(node, lambda n: set_status(n, profile.id, LOADING, now, need))
        task = asyncio.create_task(self._load(node, profile, victims))
        self.loads[key] = task
        task.add_done_callback(lambda _: self.loads.pop(key, None))
        return task

    async def _load(self, node: str, profile: ModelConfig, victims: tuple[str, ...]) -> None:
        client = self.clients[node]
        for victim in victims:
            await self._unload(node, victim, reason="evict")
            self.store.update(node, count_eviction)
        options = dict(profile.options)
        options["vram_mb"] = profile.vram_mb
        if profile.context_length:
            options.setdefault("context_length", profile.context_length)
        body = {
            "model_id": profile.id,
            "source": profile.source_or_id,
            "harness": profile.harness,
            "options": options,
        }
        started = self.clock()
        try:
            result = await client.post(
                "/models/load", body, timeout=self.config.gateway.load_timeout_s
            )
        except ApiError as exc:
            self.store.update(node, lambda n: set_status(n, profile.id, FAILED, self.clock()))
            log.error("loading %s on %s failed: %s", profile.id, node, exc.message)
            raise
        vram = int(result.get("vram_used_mb", 0)) if isinstance(result, dict) else 0
        if vram:
            self.store.measured_mb[profile.id] = vram
        self.store.update(node, lambda n: set_status(n, profile.id, LOADED, self.clock(), vram))
        seconds = self.clock() - started
        log.info("loaded %s on %s in %.2f s (%d MB)", profile.id, node, seconds, vram)
        self.on_event("load", {"model": profile.id, "node": node, "seconds": seconds})

    async def _unload(self, node: str, model_id: str, reason: str) -> None:
        self.store.update(node, lambda n: set_status(n, model_id, UNLOADING, self.clock()))
        with contextlib.suppress(NotFound):  # already gone: the goal is reached
            await self.clients[node].post(
                "/models/unload", {"model_id": model_id}, timeout=UNLOAD_TIMEOUT_S
            )
        self.store.update(node, lambda n: drop_model(n, model_id))
        self.store.forget_endpoints(node, model_id)
        log.info("unloaded %s on %s (reason: %s)", model_id, node, reason)
        self.on_event("unload", {"model": model_id, "node": node, "reason": reason})

    async def unload(self, node: str, model_id: str, reason: str) -> None:
        await self._unload(node, model_id, reason)

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
