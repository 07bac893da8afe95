"""``cortex load MODEL [--node N]``: load a catalogue model now (POST /admin/load)."""

from __future__ import annotations

from cortex.cli.admin import run_load as run

__all__ = ["run"]
