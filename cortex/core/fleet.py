"""Frozen snapshot of the fleet as the gateway last saw it. Pure values.

The gateway's ``FleetStore`` holds one ``FleetView``; the poller and the lifecycle
executor replace it with updated copies (``attrs.evolve``); the router reads it.
"""

from __future__ import annotations

import functools

import attrs

# Model states on a node, as SPEC section 2 names them.
LOADING, LOADED, UNLOADING, FAILED = "loading", "loaded", "unloading", "failed"


@attrs.frozen
class DeviceView:
    index: int
    name: str
    vram_total_mb: int
    vram_free_mb: int


@attrs.frozen
class ModelOnNode:
    id: str
    status: str = LOADED
    vram_used_mb: int = 0
    devices: tuple[int, ...] = ()  # device indices it occupies on its node
    in_flight: int = 0
    queued: int = 0
    last_used: float = 0.0  # gateway clock; 0 = never used through this gateway
    loaded_at: float = 0.0
    pending: int = 0  # requests that caused its load and have not been served yet

    @property
    def busy(self) -> bool:
        return self.in_flight > 0 or self.queued > 0 or self.pending > 0


@attrs.frozen
class NodeView:
    name: str
    endpoint: str
    healthy: bool = False
    devices: tuple[DeviceView, ...] = ()
    models: tuple[ModelOnNode, ...] = ()
    evictions_since_defrag: int = 0

    @property
    def vram_free_mb(self) -> int:
        return sum(d.vram_free_mb for d in self.devices)

    @property
    def vram_total_mb(self) -> int:
        return sum(d.vram_total_mb for d in self.devices)

    def model(self, model_id: str) -> ModelOnNode | None:
        return next((m for m in self.models if m.id == model_id), None)


@attrs.frozen
class FleetView:
    nodes: tuple[NodeView, ...] = ()

    def node(self, name: str) -> NodeView | None:
        return next((n for n in self.nodes if n.name == name), None)

    def healthy_nodes(self) -> tuple[NodeView, ...]:
        return tuple(n for n in self.nodes if n.healthy)

    def replace_node(self, node: NodeView) -> FleetView:
        return FleetView(tuple(node if n.name == node.name else n for n in self.nodes))

    # Indexes built once per snapshot, on first use (the router reads them per request).

    @functools.cached_property
    def model_index(self) -> dict[str, tuple[tuple[NodeView, ModelOnNode], ...]]:
        """Every (node, entry) pair per model id, any node, any status, in node order."""
        index: dict[str, list[tuple[NodeView, ModelOnNode]]] = {}
        for node in self.nodes:
            for model in node.models:
                index.setdefault(model.id, []).append((node, model))
        return {model_id: tuple(pairs) for model_id, pairs in index.items()}

    def placements(self, model_id: str) -> tuple[tuple[NodeView, ModelOnNode], ...]:
        """Where a model has an entry (any status), as (node, entry) pairs."""
        return self.model_index.get(model_id, ())

    @functools.cached_property
    def healthy_by_free(self) -> tuple[NodeView, ...]:
        """Healthy nodes, most free memory first, then by name."""
        return tuple(sorted(self.healthy_nodes(), key=lambda n: (-n.vram_free_mb, n.name)))
