"""A gateway and neurons as real processes, each in its own network namespace.

Topology: the gateway's namespace is joined to the test's namespace (the client
link) and to each neuron's namespace (its data link); each neuron also has a watch
link to the test's namespace so the test can read its ``/metrics`` without going
through the gateway. Neurons bind 0.0.0.0:13131 in their namespace and report
``http://localhost:13131``; the gateway reaches them by their data-link address.
Every wait here is bounded.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from tests.fleet import REPO
from tests.netns import Bed, Link

NEURON_PORT = 13131
GATEWAY_PORT = 31313
METRICS_PORT = 31314
READY_BOUND_S = 30.0
STOP_BOUND_S = 20.0
NEURON_TOKEN = "neuron-secret"
API_KEY = "client-key"

MODELS = """
[[models]]
id = "m"
harness = "echo"
vram_mb = 100

[[models]]
id = "slow"
harness = "echo"
vram_mb = 100
options = { delay_ms = 100 }
"""

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)$")


@attrs.define
class Proc:
    """One running cortex process (``ip netns exec NS python -m cortex ...``)."""

    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int) -> None:
        if self.alive:
            self.popen.send_signal(sig)

    def wait(self, bound_s: float = STOP_BOUND_S) -> int:
        """Wait for the exit (bounded; killed past the bound) and close the pipe."""
        try:
            self.popen.wait(timeout=bound_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=bound_s)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.popen.returncode

    def stop(self, sig: int = signal.SIGTERM, bound_s: float = STOP_BOUND_S) -> int:
        if self.alive:
            self.popen.send_signal(signal.SIGCONT)  # a frozen process must see the signal
            self.popen.send_signal(sig)
        return self.wait(bound_s)


def spawn(argv: Sequence[str], ready: str, log: Path, env: dict[str, str] | None = None) -> Proc:
    """Start ``argv``; return once it prints ``<ready> on port N`` (bounded)."""
    with log.open("ab") as err:
        popen = subprocess.Popen(
            list(argv),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            env=None if env is None else {**os.environ, **env},
        )
    assert popen.stdout is not None
    fd, seen = popen.stdout.fileno(), b""
    deadline = time.monotonic() + READY_BOUND_S
    while time.monotonic() < deadline:
        readable, _, _ = select.select([fd], [], [], 0.2)
        if readable:
            chunk = os.read(fd, 4096)
            seen += chunk
            match = re.search(rb"ready on port (\d+)", seen)
            if match:
                return Proc(popen, log, int(match[1]))
            if not chunk:
                break
        elif popen.poll() is not None:
            break
    proc = Proc(popen, log, 0)
    proc.stop(signal.SIGKILL)
    raise AssertionError(f"{ready} not seen from {argv}:\n{log.read_text()[-3000:]}")


@attrs.define
class Neuron:
    name: str
    ns: str
    data: Link  # gateway <-> neuron
    watch: Link  # test <-> neuron
    proc: Proc | None = None

    @property
    def url(self) -> str:
        """The neuron as the gateway reaches it."""
        return f"http://{self.data.addr_b}:{NEURON_PORT}"

    @property
    def watch_url(self) -> str:
        """The neuron as this test reaches it."""
        return f"http://{self.watch.addr_b}:{NEURON_PORT}"


class Cluster:
    """One gateway namespace, ``n`` neuron namespaces, their links and processes."""

    def __init__(self, bed: Bed, tmp: Path, names: Sequence[str] = ("n1", "n2")) -> None:
        self.bed, self.tmp = bed, tmp
        self.gateway_ns = bed.namespace("gw")
        self.client = bed.link(None, self.gateway_ns)
        self.neurons: dict[str, Neuron] = {}
        for name in names:
            ns = bed.namespace(name)
            data = bed.link(self.gateway_ns, ns)
            self.neurons[name] = Neuron(name, ns, data, bed.link(None, ns))
        self.gateway: Proc | None = None
        self.models_toml = MODELS
        self.api_keys: tuple[str, ...] = ()
        self.neuron_token = NEURON_TOKEN
        self.gateway_options: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://{self.client.addr_b}:{GATEWAY_PORT}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.client.addr_b}:{METRICS_PORT}"

    def python(self, ns: str, *args: str) -> list[str]:
        return self.bed.exec_argv(ns, [sys.executable, *args])

    # -- neurons -------------------------------------------------------------

    def neuron_config(self, name: str, token: str | None = None) -> Path:
        path = self.tmp / f"{name}.toml"
        path.write_text(
            f'host = "0.0.0.0"\nport = {NEURON_PORT}\n'
            f'token = "{self.neuron_token if token is None else token}"\n'
            f'default_harness = "echo"\nmodels_dir = "{self.tmp}"\n'
            '[[simulate_devices]]\nname = "sim0"\nvram_total_mb = 1000\n'
        )
        return path

    def start_neuron(
        self, name: str, argv: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> Neuron:
        """Start (or restart) ``name``'s neuron; ``argv`` replaces ``-m cortex neuron``."""
        neuron = self.neurons[name]
        config = self.neuron_config(name)
        args = argv or ("-m", "cortex", "neuron")
        neuron.proc = spawn(
            self.python(neuron.ns, *args, "-c", str(config)),
            "neuron ready",
            self.tmp / f"{name}.log",
            env,
        )
        return neuron

    def stop_neuron(self, name: str, sig: int = signal.SIGTERM) -> int:
        proc = self.neurons[name].proc
        assert proc is not None
        return proc.stop(sig)

    # -- gateway -------------------------------------------------------------

    def gateway_config(self) -> Path:
        (self.tmp / "models.toml").write_text(self.models_toml)
        options = {
            "listen": f'"0.0.0.0:{GATEWAY_PORT}"',
            "metrics_listen": f'"0.0.0.0:{METRICS_PORT}"',
            "models": '"models.toml"',
            "neuron_token": f'"{self.neuron_token}"',
            "api_keys": "[" + ", ".join(f'"{k}"' for k in self.api_keys) + "]",
            "poll_interval_s": "0.25",
            "unhealthy_after_failures": "2",
            "stream_idle_timeout_s": "2",
            "load_timeout_s": "15",
            "keepalive_s": "0.5",
            **{k: _toml(v) for k, v in self.gateway_options.items()},
        }
        lines = ["[gateway]", *(f"{k} = {v}" for k, v in options.items())]
        for n in self.neurons.values():
            lines += ["[[neurons]]", f'name = "{n.name}"', f'endpoint = "{n.url}"']
        path = self.tmp / "cortex.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start_gateway(self) -> Proc:
        self.gateway = spawn(
            self.python(
                self.gateway_ns, "-m", "cortex", "gateway", "-c", str(self.gateway_config())
            ),
            "gateway ready",
            self.tmp / "gateway.log",
        )
        return self.gateway

    def start(self) -> Cluster:
        """Every neuron, then the gateway."""
        for name in self.neurons:
            self.start_neuron(name)
        self.start_gateway()
        return self

    def close(self) -> None:
        procs = [n.proc for n in self.neurons.values()] + [self.gateway]
        for proc in procs:
            if proc is not None:
                proc.stop(signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-4000:]}" for p in self.tmp.glob("*.log"))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    """Prometheus text -> {(name, labels as written): value}."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            out[(match[1], match[2] or "")] = float(match[3])
    return out
