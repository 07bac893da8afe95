"""Reading config files for the commands. I/O: files and the environment.

A missing or broken file is a ``ConfigError`` naming it; ``__main__`` turns that
into exit status 2 with no traceback.
"""

from __future__ import annotations

import logging
import os

from cortex.core.catalogue import Catalogue
from cortex.core.config import (
    GatewayConfig,
    NeuronConfig,
    parse_gateway_config,
    parse_models,
    parse_neuron_config,
    resolve_path,
)
from cortex.errors import ConfigError

log = logging.getLogger("cortex")


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"cannot read: {exc}"]) from None


def _default(path: str | None, name: str) -> str | None:
    if path is not None:
        return path
    return name if os.path.exists(name) else None


def load_gateway(path: str | None) -> tuple[GatewayConfig, str]:
    """The gateway config and the absolute path of its catalogue."""
    path = _default(path, "cortex.toml")
    text = read_text(path) if path else ""
    source = path or "cortex.toml (defaults)"
    config, warnings = parse_gateway_config(text, source, os.environ)
    for warning in warnings:
        log.warning(warning)
    base = path or os.path.join(os.getcwd(), "cortex.toml")
    return config, resolve_path(config.gateway.models, base)


def load_catalogue(models_path: str) -> Catalogue:
    if not os.path.exists(models_path):
        log.warning("no catalogue at %s; serving only what neurons report loaded", models_path)
        return Catalogue()
    return Catalogue(parse_models(read_text(models_path), models_path).models)


def load_neuron(path: str | None) -> tuple[NeuronConfig, str]:
    """The neuron config and the absolute path of its models_dir."""
    path = _default(path, "neuron.toml")
    text = read_text(path) if path else ""
    config, warnings = parse_neuron_config(text, path or "neuron.toml (defaults)", os.environ)
    for warning in warnings:
        log.warning(warning)
    base = path or os.path.join(os.getcwd(), "neuron.toml")
    return config, resolve_path(config.models_dir, base)
