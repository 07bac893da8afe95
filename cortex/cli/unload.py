"""``cortex unload MODEL [--node N]``: unload a model, everywhere or on one node."""

from __future__ import annotations

from cortex.cli.admin import run_unload as run

__all__ = ["run"]
