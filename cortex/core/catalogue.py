"""The model catalogue: profiles by id, alias resolution, feasibility. Pure."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from cortex.core.config import ModelConfig
from cortex.core.fleet import NodeView


@attrs.frozen
class Catalogue:
    models: tuple[ModelConfig, ...] = ()
    _by_name: dict[str, ModelConfig] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        by_name: dict[str, ModelConfig] = {}
        for model in self.models:
            for name in (model.id, *model.aliases):
                by_name.setdefault(name, model)
        object.__setattr__(self, "_by_name", by_name)

    def resolve(self, name: str) -> ModelConfig | None:
        """The profile a client's model name (id or alias) refers to."""
        return self._by_name.get(name)

    def get(self, model_id: str) -> ModelConfig | None:
        model = self._by_name.get(model_id)
        return model if model is not None and model.id == model_id else None

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.models)


def default_profile(model_id: str) -> ModelConfig:
    """A model a neuron reports loaded that the catalogue does not know."""
    return ModelConfig(id=model_id)


def is_feasible(profile: ModelConfig, node: NodeView) -> bool:
    """SPEC 1.2: pinned_on (when set), enough devices, enough of them large enough."""
    if profile.pinned_on and node.name not in profile.pinned_on:
        return False
    big_enough = [d for d in node.devices if d.vram_total_mb >= profile.min_device_vram_mb]
    return len(big_enough) >= max(profile.min_devices, 1)


def feasible_nodes(profile: ModelConfig, nodes: Iterable[NodeView]) -> list[str]:
    return [n.name for n in nodes if is_feasible(profile, n)]
