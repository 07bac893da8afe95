"""Re-reading the catalogue file (SIGHUP and ``POST /admin/reload``).

I/O: reads ``models.toml``. A missing or broken file raises ``ConfigError`` and
the old catalogue stays in force; loaded models are never touched by a reload
(housekeeping acts on new ``pinned_on`` entries at its next round).
"""

from __future__ import annotations

import logging
import os

from cortex.cli.configfiles import load_catalogue
from cortex.core.catalogue import Catalogue
from cortex.errors import ConfigError
from cortex.gateway.state import GatewayState

log = logging.getLogger("cortex.gateway")


def reload_catalogue(state: GatewayState) -> Catalogue:
    """Read ``state.models_path`` and swap the catalogue in; raises ``ConfigError``."""
    path = state.models_path
    try:
        if not os.path.exists(path):
            raise ConfigError(path, ["file not found"])
        catalogue = load_catalogue(path)
    except ConfigError as exc:
        log.error("catalogue reload failed; keeping the old one: %s", "; ".join(exc.lines))
        raise
    state.store.catalogue = catalogue
    log.info("catalogue reloaded from %s: %d models", path, len(catalogue.models))
    return catalogue
