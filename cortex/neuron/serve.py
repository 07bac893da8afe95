"""Run the neuron process: bind, serve until SIGINT/SIGTERM, unload on the way out.

I/O: sockets and signals. The port is bound before preloading starts, so /health
answers ``starting`` at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from cortex.core.config import NeuronConfig
from cortex.neuron.app import build_state, create_app
from cortex.neuron.plugins import HarnessRegistry

log = logging.getLogger("cortex.neuron")

# Unloading frees device memory promptly; past this the process exits anyway.
SHUTDOWN_BOUND_S = 10.0


async def run_neuron(
    config: NeuronConfig,
    models_dir: str,
    harnesses: HarnessRegistry | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    state = await build_state(config, models_dir, harnesses)
    app = create_app(state)
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_BOUND_S
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    state.port = runner.addresses[0][1]
    if config.token == "" and config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "listening on %s without a token: anyone who reaches it can load models", config.host
        )
    log.info(
        "neuron listening on http://%s:%d (devices: %s; harnesses: %s)",
        config.host,
        state.port,
        ", ".join(f"{d.name} {d.vram_total_mb} MB" for d in state.devices),
        ", ".join(state.registry.harnesses.names),
    )
    print(f"neuron ready on port {state.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("neuron stopping")
        await asyncio.wait_for(runner.cleanup(), SHUTDOWN_BOUND_S * 2)
