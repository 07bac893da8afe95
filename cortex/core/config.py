"""Configuration types and their parsing from TOML text. Pure: no file or env access.

``parse_*`` take the text (and, for overrides, an environment mapping) and return
frozen attrs values, or raise ``ConfigError`` whose lines read like
``expected int @ $.neurons[0].endpoint``. Only ``__main__`` reads files.
"""

from __future__ import annotations

import os.path
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import cattrs
import tomlkit
from cattrs.preconf.tomlkit import make_converter

from cortex.errors import ConfigError


def _one_of(*choices: str) -> Any:
    def check(_instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in choices:
            raise ValueError(f"{attribute.name} must be one of {list(choices)}, got {value!r}")

    return check


@attrs.frozen
class GatewaySection:
    listen: str = "0.0.0.0:31313"
    metrics_listen: str = "0.0.0.0:31314"  # "" disables metrics
    models: str = "models.toml"
    api_keys: tuple[str, ...] = ()
    neuron_token: str = ""
    poll_interval_s: float = 5
    unhealthy_after_failures: int = 3
    stream_idle_timeout_s: float = 120
    load_timeout_s: float = 1800
    max_queue_per_model: int = 64
    keepalive_s: float = 1
    trust_neuron_urls: bool = False


@attrs.frozen
class EvictionSection:
    strategy: str = attrs.field(default="lru", validator=_one_of("lru", "priority"))
    defrag_after_cycles: int = 50
    idle_unload_s: float = 0


@attrs.frozen
class NeuronRef:
    name: str
    endpoint: str


@attrs.frozen
class GatewayConfig:
    gateway: GatewaySection = GatewaySection()
    eviction: EvictionSection = EvictionSection()
    neurons: tuple[NeuronRef, ...] = ()


@attrs.frozen
class ModelConfig:
    """One catalogue entry (``[[models]]`` in models.toml)."""

    id: str
    source: str = ""  # a folder under the neuron's models_dir; "" means the id
    harness: str = "onnx"
    aliases: tuple[str, ...] = ()
    vram_mb: int = 0
    min_devices: int = 1
    min_device_vram_mb: int = 0
    pinned_on: tuple[str, ...] = ()
    priority: int = 0
    max_concurrency: int = 4
    context_length: int = 0
    options: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def source_or_id(self) -> str:
        return self.source or self.id


@attrs.frozen
class ModelsFile:
    models: tuple[ModelConfig, ...] = ()


@attrs.frozen
class SimulatedDevice:
    name: str
    vram_total_mb: int


@attrs.frozen
class NeuronConfig:
    port: int = 13131
    host: str = "0.0.0.0"
    token: str = ""
    default_harness: str = "onnx"
    models_dir: str = "models"
    preload: tuple[str, ...] = ()
    simulate_devices: tuple[SimulatedDevice, ...] = ()


_converter = make_converter(forbid_extra_keys=True)
_converter.register_structure_hook_func(
    lambda t: t == Mapping[str, Any],
    lambda value, _: dict(value) if isinstance(value, Mapping) else _bad_table(),
)

T = TypeVar("T")


def strict_scalars(converter: cattrs.Converter) -> None:
    """cattrs would coerce 1 -> "1" and "3" -> 3; a typo must fail instead."""

    def hook_for(kind: type[Any], accepts: tuple[type[Any], ...]) -> Any:
        def hook(value: Any, _: Any) -> Any:
            if isinstance(value, bool) and kind is not bool:
                raise TypeError(f"expected {kind.__name__}, got a boolean")
            if not isinstance(value, accepts):
                raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
            return kind(value)

        return hook

    for kind, accepts in ((str, (str,)), (int, (int,)), (float, (int, float)), (bool, (bool,))):
        converter.register_structure_hook(kind, hook_for(kind, accepts))


strict_scalars(_converter)


def _bad_table() -> dict[str, Any]:
    raise TypeError("expected a table")


def _structure(data: Mapping[str, Any], cls: type[T], source: str) -> T:
    try:
        return _converter.structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            lines = cattrs.transform_error(exc, format_exception=_describe)
        else:
            lines = [str(exc)]
        raise ConfigError(source, [_friendlier(line) for line in lines]) from None


def _describe(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown key(s) {sorted(exc.extra_fields)}"
    return str(exc) or type(exc).__name__


def _friendlier(line: str) -> str:
    # cattrs says "extra fields found (foo)"; operators look for the word "unknown".
    return line.replace("extra fields found", "unknown key(s)").replace(
        "required field missing", "required key missing"
    )


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomlkit.parse(text).unwrap()
    except tomlkit.exceptions.TOMLKitError as exc:
        raise ConfigError(source, [f"invalid TOML: {exc}"]) from None


def parse_gateway_config(
    text: str, source: str = "cortex.toml", env: Mapping[str, str] | None = None
) -> tuple[GatewayConfig, list[str]]:
    """Parse cortex.toml, apply ``CORTEX_<SECTION>__<KEY>`` overrides; return warnings too."""
    data = _parse_toml(text, source)
    warnings = _apply_env(data, env or {}, "CORTEX_", GatewayConfig, nested=True)
    config = _structure(data, GatewayConfig, source)
    names = [n.name for n in config.neurons]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(source, [f"duplicate neuron name(s) {duplicates} @ $.neurons"])
    return config, warnings


def parse_models(text: str, source: str = "models.toml") -> ModelsFile:
    """Parse the catalogue; ids and aliases must be unique across it."""
    models = _structure(_parse_toml(text, source), ModelsFile, source)
    seen: dict[str, str] = {}
    for i, model in enumerate(models.models):
        for name in (model.id, *model.aliases):
            if name in seen:
                raise ConfigError(
                    source, [f"name {name!r} already used by {seen[name]!r} @ $.models[{i}]"]
                )
            seen[name] = model.id
    return models


def parse_neuron_config(
    text: str, source: str = "neuron.toml", env: Mapping[str, str] | None = None
) -> tuple[NeuronConfig, list[str]]:
    """Parse neuron.toml, apply ``NEURON__<KEY>`` overrides; return warnings too."""
    data = _parse_toml(text, source)
    warnings = _apply_env(data, env or {}, "NEURON__", NeuronConfig, nested=False)
    return _structure(data, NeuronConfig, source), warnings


def resolve_path(path: str, config_file: str) -> str:
    """A relative path in a config file is relative to that file's folder."""
    if not path or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_file)), path))


_SCALARS = (str, int, float, bool)


def _scalar_fields(cls: type[Any]) -> dict[str, Any]:
    return {
        f.name: f.type
        for f in attrs.fields(cls)
        if f.type in _SCALARS or f.type in {"str", "int", "float", "bool"}
    }


def _apply_env(
    data: dict[str, Any], env: Mapping[str, str], prefix: str, cls: type[Any], *, nested: bool
) -> list[str]:
    """Write overrides from ``env`` into ``data``; unknown names become warnings."""
    attrs.resolve_types(cls)
    warnings: list[str] = []
    for name, raw in sorted(env.items()):
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :].lower()
        if nested:
            section, _, key = rest.partition("__")
            section_cls = next(
                (f.type for f in attrs.fields(cls) if f.name == section and attrs.has(f.type)),
                None,
            )
            target_cls = section_cls
        else:
            section, key, target_cls = "", rest, cls
        if target_cls is None or key not in _scalar_fields(attrs.resolve_types(target_cls)):
            warnings.append(f"{name} names no known setting; ignored")
            continue
        try:
            value = tomlkit.parse(f"v = {raw}")["v"].unwrap()
        except tomlkit.exceptions.TOMLKitError:
            value = raw  # a bare word is taken as a string, as a shell user expects
        table = data.setdefault(section, {}) if section else data
        table[key] = value
    return warnings
