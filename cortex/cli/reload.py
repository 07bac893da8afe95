"""``cortex reload``: re-read the gateway's models.toml, as SIGHUP does (POST /admin/reload)."""

from __future__ import annotations

from cortex.cli.admin import run_reload as run

__all__ = ["run"]
