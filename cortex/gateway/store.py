"""The gateway's one mutable holder: the current fleet snapshot and catalogue.

Readers take ``store.view`` (a frozen ``FleetView``) and decide on it; writers
replace a node with a pure ``NodeView -> NodeView`` update. No lock is held across
an ``await``: every update is a synchronous swap on the event loop. ``changed()``
lets a request that waits for room sleep until the next swap instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from cortex.core import wire
from cortex.core.catalogue import Catalogue
from cortex.core.config import NeuronRef
from cortex.core.fleet import FleetView, NodeView
from cortex.core.observe import set_counts


class FleetStore:
    def __init__(self, neurons: tuple[NeuronRef, ...], catalogue: Catalogue) -> None:
        self.view = FleetView(tuple(NodeView(name=n.name, endpoint=n.endpoint) for n in neurons))
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
        self.update(node, lambda n: set_counts(n, model_id, *new))

    def forget_endpoints(self, node: str, model_id: str | None = None) -> None:
        for key in [k for k in self.endpoints if k[0] == node and model_id in (None, k[1])]:
            del self.endpoints[key]
