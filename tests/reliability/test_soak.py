"""Soak: a few thousand mixed requests, client disconnects and a neuron restart.

The gateway runs in this process (so its asyncio tasks can be counted); two neurons run
as subprocesses on loopback, and one is restarted mid-run. Afterwards open file
descriptors, tasks and RSS must be back near where they were after the warm-up.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import psutil
import pytest

from tests.e2e.procs import free_port
from tests.fleet import eventually, start_gateway
from tests.reliability.cluster import Proc, spawn

REQUESTS = 2000
CONCURRENCY = 16
MODELS = """
[[models]]
id = "m"
harness = "echo"
vram_mb = 100

[[models]]
id = "slow"
harness = "echo"
vram_mb = 100
options = { delay_ms = 20 }
"""


@attrs.define
class LoopbackNeuron:
    name: str
    url: str
    config: Path
    log: Path
    proc: Proc | None = None

    def start(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        argv = [sys.executable, "-m", "cortex", "neuron", "-c", str(self.config), "--port", port]
        self.proc = spawn(argv, "neuron ready", self.log)


def neuron(tmp: Path, name: str) -> LoopbackNeuron:
    config = tmp / f"{name}.toml"
    config.write_text(
        f'host = "127.0.0.1"\ndefault_harness = "echo"\nmodels_dir = "{tmp}"\n'
        '[[simulate_devices]]\nname = "sim0"\nvram_total_mb = 1000\n'
    )
    return LoopbackNeuron(name, f"http://127.0.0.1:{free_port()}", config, tmp / f"{name}.log")


def footprint() -> dict[str, float]:
    gc.collect()
    me = psutil.Process()
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": len(asyncio.all_tasks()),
        "rss_mb": round(me.memory_info().rss / 2**20, 1),
    }


async def one(s: aiohttp.ClientSession, url: str, rng: random.Random) -> str:
    """One random request, read to its end (or abandoned on purpose); returns its outcome."""
    anthropic, stream = rng.random() < 0.5, rng.random() < 0.5
    leave = stream and rng.random() < 0.1
    model = "slow" if leave else rng.choice(["m", "slow"])
    words = " ".join(f"w{i}" for i in range(rng.randint(1, 30 if leave else 8)))
    body: dict[str, Any] = {"model": model, "stream": stream}
    body["messages"] = [{"role": "user", "content": words}]
    if anthropic:
        body["max_tokens"] = 64
    path = "/v1/messages" if anthropic else "/v1/chat/completions"
    timeout = aiohttp.ClientTimeout(total=30)
    async with s.post(url + path, json=body, timeout=timeout) as r:
        if leave and r.status == 200:
            await r.content.readline()
            r.close()
            return "left"
        text = await r.text()
        if r.status != 200:
            return str(r.status)
        cut = "event: error" in text or (stream and not anthropic and "[DONE]" not in text)
        return "cut" if cut else "ok"


@pytest.mark.slow
async def test_soak_leaves_no_leaked_fds_tasks_or_memory(tmp_path: Path) -> None:
    """After thousands of mixed requests and a neuron restart nothing has leaked."""
    n1, n2 = neuron(tmp_path, "n1"), neuron(tmp_path, "n2")
    n1.start()
    n2.start()
    try:
        async with start_gateway(
            [n1, n2], MODELS, poll_interval_s=0.25, unhealthy_after_failures=2,
            stream_idle_timeout_s=5, load_timeout_s=20,
        ) as gw:  # fmt: skip
            rng = random.Random(7)
            outcomes: dict[str, int] = {}
            async with aiohttp.ClientSession() as s:
                for _ in range(50):
                    await one(s, gw.url, rng)
            await asyncio.sleep(0.5)
            before = footprint()
            started = time.monotonic()
            queue = iter(range(REQUESTS))

            async def worker(s: aiohttp.ClientSession) -> None:
                for i in queue:
                    if i == REQUESTS // 3:
                        assert n1.proc is not None
                        await asyncio.to_thread(n1.proc.stop, signal.SIGTERM)
                        await asyncio.to_thread(n1.start)
                    try:
                        outcome = await one(s, gw.url, rng)
                    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                        outcome = type(exc).__name__
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1

            async with aiohttp.ClientSession() as s:
                await asyncio.gather(*(worker(s) for _ in range(CONCURRENCY)))
            seconds = time.monotonic() - started
            state = gw.state
            await eventually(lambda: not any(state.store.counts.values()), "counts to settle")
            await asyncio.sleep(1.0)  # closed connections finish closing
            after = footprint()
            print(
                f"\nsoak: {REQUESTS} requests in {seconds:.1f} s; outcomes {outcomes}"
                f"\nsoak: before {before}\nsoak: after  {after}"
            )
            assert not any(state.store.counts.values()), state.store.counts
            assert sum(v for k, v in outcomes.items() if k in ("ok", "left")) > REQUESTS * 0.9
            assert "TimeoutError" not in outcomes, outcomes  # no hung client
            assert after["fds"] <= before["fds"] + 8
            assert after["tasks"] <= before["tasks"] + 2
            assert after["rss_mb"] <= before["rss_mb"] + 40
    finally:
        for n in (n1, n2):
            if n.proc is not None:
                n.proc.stop()
