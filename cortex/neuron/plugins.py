"""Harness discovery through the ``cortex.harnesses`` entry-point group.

Only the selected entry point is imported, so a host without onnxruntime can still
run the ``echo`` harness; a missing name lists the names that exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from cortex.errors import NotFound
from cortex.harness import Harness

GROUP = "cortex.harnesses"


def harness_entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


class HarnessRegistry:
    """Harness instances by name, created on first use and kept for the process."""

    def __init__(self, points: Iterable[EntryPoint] | None = None) -> None:
        chosen = harness_entry_points() if points is None else list(points)
        self._points = {ep.name: ep for ep in chosen}
        self._instances: dict[str, Harness] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._points)

    def get(self, name: str) -> Harness:
        if name in self._instances:
            return self._instances[name]
        point = self._points.get(name)
        if point is None:
            raise NotFound(
                f"no harness named {name!r}; this neuron has {self.names}", code="unknown_harness"
            )
        factory = point.load()
        harness: Harness = factory()
        self._instances[name] = harness
        return harness

    def add(self, name: str, harness: Harness) -> None:
        """Register an instance directly (tests inject harnesses this way)."""
        self._instances[name] = harness
        self._points.setdefault(name, EntryPoint(name, f"injected:{name}", GROUP))

    def loaded_instances(self) -> list[Harness]:
        return list(self._instances.values())
