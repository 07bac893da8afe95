"""Gateway <-> neuron JSON types shared by both roles (SPEC section 2). Pure.

Consumers ignore fields they do not know, so a newer neuron can talk to an older
gateway; ``decode`` raises ``WireError`` naming the path of a missing or bad field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.preconf.json import make_converter

from cortex.core.config import strict_scalars

T = TypeVar("T")


class WireError(ValueError):
    """A neuron or gateway sent a body this version cannot read."""


@attrs.frozen
class DeviceReport:
    index: int
    name: str
    vram_total_mb: int
    compute_capability: str | None = None


@attrs.frozen
class CpuReport:
    cores: int
    ram_total_mb: int


@attrs.frozen
class Discovery:
    hostname: str
    os: str
    kernel: str
    version: str
    devices: tuple[DeviceReport, ...]
    cpu: CpuReport
    harnesses: tuple[str, ...]
    providers: tuple[str, ...] = ()
    driver_version: str | None = None
    cuda_version: str | None = None
    instance_id: str = ""  # changes on every neuron start


@attrs.frozen
class DeviceHealth:
    index: int
    vram_used_mb: int
    vram_free_mb: int
    utilization_pct: float | None = None
    temp_c: float | None = None


@attrs.frozen
class ModelLoad:
    id: str
    in_flight: int = 0
    queued: int = 0


@attrs.frozen
class Health:
    status: str
    uptime_s: float
    devices: tuple[DeviceHealth, ...] = ()
    models: tuple[ModelLoad, ...] = ()
    instance_id: str = ""


@attrs.frozen
class ModelStatus:
    id: str
    harness: str
    status: str
    devices: tuple[int, ...] = ()
    vram_used_mb: int = 0
    in_flight: int = 0
    queued: int = 0
    provider: str = ""
    context_length: int = 0
    error: str | None = None


@attrs.frozen
class LoadRequest:
    model_id: str
    source: str | None = None
    harness: str | None = None
    devices: tuple[int, ...] | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class LoadResult:
    status: str
    model_id: str
    vram_used_mb: int = 0


_converter = make_converter()  # extra keys are ignored: forward compatible
strict_scalars(_converter)
_converter.register_structure_hook_func(
    lambda t: t == Mapping[str, Any], lambda value, _: dict(value)
)


def encode(value: Any) -> Any:
    """attrs value -> JSON-ready dict (None fields kept: consumers expect them)."""
    return _converter.unstructure(value)


def decode(data: Any, cls: type[T]) -> T:
    try:
        return _converter.structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            raise WireError("; ".join(cattrs.transform_error(exc))) from None
        raise WireError(str(exc)) from None
