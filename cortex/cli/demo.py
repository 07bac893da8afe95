"""The models ``cortex up`` can serve, made ready on this machine.

I/O: may extract files into the cache folder. ``echo`` needs nothing.
"""

from __future__ import annotations

import attrs

from cortex.errors import ConfigError

DEMOS = ("echo",)


@attrs.frozen
class DemoModel:
    id: str
    harness: str
    models_dir: str
    catalogue_entry: str
    python: list[str] | None = None  # the interpreter for the neuron, if not this one


def prepare_model(name: str | None, cache: str) -> DemoModel:
    name = name or "echo"
    if name == "echo":
        entry = (
            '[[models]]\nid = "echo"\nharness = "echo"\nvram_mb = 0\noptions = {delay_ms = 20}\n'
        )
        return DemoModel("echo", "echo", cache, entry)
    raise ConfigError("--model", [f"unknown demo model {name!r}; choose one of {list(DEMOS)}"])
