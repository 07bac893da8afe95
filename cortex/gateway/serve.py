"""Run the gateway process: bind the API and metrics listeners, reload on SIGHUP,
drain on SIGTERM.

I/O: sockets, signals and the catalogue file. A broken catalogue on reload is
reported and the old one kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from cortex import linelog, speedups
from cortex.core.catalogue import Catalogue
from cortex.core.config import GatewayConfig
from cortex.errors import ConfigError
from cortex.gateway.app import build_state, create_app, create_metrics_app
from cortex.gateway.reload import reload_catalogue
from cortex.gateway.state import GatewayState

log = logging.getLogger("cortex.gateway")

# In-flight streams get this long to finish after SIGTERM before they are cut.
DRAIN_BOUND_S = 30.0


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError("listen", [f"expected host:port, got {listen!r}"])
    return host.strip("[]") or "0.0.0.0", int(port)


# Header limits (aiohttp answers 400 past them, before any handler runs): a request
# line or one header up to 8 KiB, at most 100 headers. API keys and ids fit easily.
MAX_LINE_BYTES = 8190
MAX_HEADERS = 100


async def start_site(app: web.Application, listen: str) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=DRAIN_BOUND_S,
        max_line_size=MAX_LINE_BYTES,
        max_field_size=MAX_LINE_BYTES,
        max_headers=MAX_HEADERS,
    )
    await runner.setup()
    host, port = split_listen(listen)
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner, runner.addresses[0][1]


async def run_gateway(
    config: GatewayConfig,
    catalogue: Catalogue,
    models_path: str,
) -> None:
    state: GatewayState = await build_state(config, catalogue, models_path)
    runner, port = await start_site(create_app(state), config.gateway.listen)
    runners = [runner]
    metrics_port = None
    if config.gateway.metrics_listen:
        metrics_runner, metrics_port = await start_site(
            create_metrics_app(state), config.gateway.metrics_listen
        )
        runners.append(metrics_runner)
    log.info(
        "gateway listening on port %d (metrics: %s; neurons: %s; %s)",
        port,
        metrics_port or "off",
        ", ".join(n.name for n in config.neurons) or "none",
        speedups.describe(),
    )
    print(
        f"gateway ready on port {port}" + (f", metrics on {metrics_port}" if metrics_port else ""),
        flush=True,
    )

    def reload() -> None:
        with contextlib.suppress(ConfigError):  # logged; the old catalogue stays
            reload_catalogue(state)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("gateway stopping; in-flight requests get up to %.0f s", DRAIN_BOUND_S)
        for r in runners:
            await r.cleanup()
        linelog.flush()  # the drained requests' lines
