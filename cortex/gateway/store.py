"""The gateway's one mutable holder: the current fleet snapshot and catalogue.

Readers take ``store.view`` (a frozen ``FleetView``) and decide on it; writers
replace a node with a pure ``NodeView -> NodeView`` update. No lock is held across
an ``await``: every update is a synchronous swap on the event loop. ``changed()``
lets a request that waits for room sleep until the next swap instead of polling.

The per-request bookkeeping (in-flight and queued counts, last use) changes several
times per request; it is recorded in dicts and folded into the snapshot only when
someone reads ``view`` (``apply_usage``), once for all the changes since the last
read, so a request costs one snapshot rebuild instead of three.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from cortex.core import wire
from cortex.core.catalogue import Catalogue
from cortex.core.config import NeuronRef
from cortex.core.fleet import FleetView, NodeView
from cortex.core.observe import Usage, apply_usage


class FleetStore:
    def __init__(self, neurons: tuple[NeuronRef, ...], catalogue: Catalogue) -> None:
        self._view = FleetView(tuple(NodeView(name=n.name, endpoint=n.endpoint) for n in neurons))
        self.catalogue = catalogue
        self.measured_mb: dict[str, int] = {}
        self.failures: dict[str, int] = {n.name: 0 for n in neurons}
        self.instances: dict[str, str] = {}
        self.uptimes: dict[str, float] = {}
        self.discoveries: dict[str, wire.Discovery] = {}
        self.counts: dict[str, dict[str, tuple[int, int]]] = {n.name: {} for n in neurons}
        self.endpoints: dict[tuple[str, str], str] = {}
        self.version = 0  # bumps on every change; waiters compare it
        self._changed: asyncio.Event | None = None
        # Per node: bumps whenever the gateway's own load or unload changes a model's
        # state there; a poll that overlapped one is older than the view and is not applied.
        self.acts: dict[str, int] = {}
        # Usage not yet in the snapshot: per node, model ids in the order of their last
        # change (True when their counts changed), and pending last-use times.
        self._usage: dict[str, dict[str, bool]] = {}
        self._used: dict[tuple[str, str], float] = {}

    @property
    def view(self) -> FleetView:
        """The current snapshot, with the gateway's own counts and last uses in it."""
        if self._usage:
            self._view = self._with_usage(self._view)
        return self._view

    @view.setter
    def view(self, view: FleetView) -> None:
        self._view = view

    @property
    def states(self) -> FleetView:
        """The snapshot without the latest counts and last uses folded in: health, model
        states and memory are current (for ``sole_loaded``; no rebuild per request)."""
        return self._view

    def _with_usage(self, view: FleetView) -> FleetView:
        usage, self._usage = self._usage, {}
        used, self._used = self._used, {}
        nodes = list(view.nodes)
        for i, node in enumerate(nodes):
            models = usage.get(node.name)
            if models:
                counts = self.counts.get(node.name, {})
                changes: list[Usage] = [
                    (m, counts.get(m, (0, 0)) if counted else None, used.get((node.name, m)))
                    for m, counted in models.items()
                ]
                nodes[i] = apply_usage(node, changes)
        return FleetView(tuple(nodes))

    def _note_usage(self, node: str, model_id: str, counted: bool) -> None:
        models = self._usage.setdefault(node, {})
        counted = models.pop(model_id, False) or counted
        models[model_id] = counted  # last changed, last placed (as set_model does)
        self.version += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def touch(self, node: str, model_id: str, now: float) -> None:
        """``model_id`` on ``node`` was just used (admitted)."""
        self._used[(node, model_id)] = now
        self._note_usage(node, model_id, False)

    def update(self, name: str, change: Callable[[NodeView], NodeView]) -> NodeView | None:
        node = self.view.node(name)
        if node is None:
            return None
        new = change(node)
        if new is not node:
            self.view = self.view.replace_node(new)
            self.version += 1
            if self._changed is not None:
                self._changed.set()
                self._changed = None
        return new

    def act(self, name: str, change: Callable[[NodeView], NodeView]) -> NodeView | None:
        """An update made by a load or unload of the gateway's own (see ``acts``)."""
        self.acts[name] = self.acts.get(name, 0) + 1
        return self.update(name, change)

    async def changed(self, timeout: float) -> bool:
        """Wait until the snapshot changes (True) or ``timeout`` seconds pass (False)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        event = self._changed
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return event.is_set()

    def add_count(self, node: str, model_id: str, in_flight: int, queued: int) -> None:
        counts = self.counts.setdefault(node, {})
        old = counts.get(model_id, (0, 0))
        new = (old[0] + in_flight, old[1] + queued)
        if new == (0, 0):
            counts.pop(model_id, None)
        else:
            counts[model_id] = new
        self._note_usage(node, model_id, True)

    def forget_endpoints(self, node: str, model_id: str | None = None) -> None:
        for key in [k for k in self.endpoints if k[0] == node and model_id in (None, k[1])]:
            del self.endpoints[key]
