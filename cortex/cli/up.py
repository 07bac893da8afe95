"""``cortex up``: a whole local fleet, one neuron and one gateway, in one command.

I/O: writes configs to a cache folder, starts both roles as child processes of
this one on 127.0.0.1, prints where they listen, and stops both on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from cortex.cli.demo import DemoModel, prepare_model

# Children get this long to exit after SIGTERM before they are killed.
STOP_BOUND_S = 15.0
START_BOUND_S = 120.0


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cortex")


def self_command() -> list[str]:
    """How to run this same cortex again: the pyz file, or the package."""
    import cortex

    location = os.path.dirname(os.path.abspath(cortex.__file__))
    archive = os.path.dirname(location)
    if os.path.isfile(archive):  # inside a zipapp: .../cortex.pyz/cortex
        return [sys.executable, archive]
    return [sys.executable, "-m", "cortex"]


def _child_env() -> dict[str, str]:
    import cortex

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cortex.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _start(
    argv: list[str], ready: str, python: list[str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """Start a role and wait for its "... ready on port N" line."""
    command = (python or self_command()) + argv
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=_child_env())
    assert proc.stdout is not None
    deadline = time.monotonic() + START_BOUND_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(ready):
            return proc, int(line.split("port ")[1].split(",")[0])
    proc.kill()
    raise RuntimeError(f"{' '.join(argv[:1])} did not start (exit status {proc.wait()})")


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_BOUND_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_configs(folder: str, model: DemoModel, port: int) -> tuple[str, str]:
    os.makedirs(folder, exist_ok=True)
    neuron = os.path.join(folder, "neuron.toml")
    with open(neuron, "w", encoding="utf-8") as f:
        f.write(
            f'host = "127.0.0.1"\nport = 0\ndefault_harness = "{model.harness}"\n'
            f"models_dir = {model.models_dir!r}\n".replace("'", '"')
        )
    with open(os.path.join(folder, "models.toml"), "w", encoding="utf-8") as f:
        f.write(model.catalogue_entry)
    return neuron, os.path.join(folder, "cortex.toml")


def run(args: argparse.Namespace) -> int:
    folder = os.path.join(cache_dir(), "up")
    model = prepare_model(args.model, cache_dir())
    neuron_config, gateway_config = write_configs(folder, model, args.port)
    procs: list[subprocess.Popen[str]] = []
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        neuron, neuron_port = _start(["neuron", "-c", neuron_config], "neuron ready")
        procs.append(neuron)
        with open(gateway_config, "w", encoding="utf-8") as f:
            f.write(
                f'[gateway]\nlisten = "127.0.0.1:{args.port}"\nmetrics_listen = "127.0.0.1:0"\n'
                f'poll_interval_s = 2\n\n[[neurons]]\nname = "local"\n'
                f'endpoint = "http://127.0.0.1:{neuron_port}"\n'
            )
        gateway, port = _start(["gateway", "-c", gateway_config], "gateway ready")
        procs.append(gateway)
        url = f"http://localhost:{port}"
        print(f"\ncortex is up: gateway {url} (model {model.id!r}), neuron :{neuron_port}")
        print(f"  curl {url}/v1/chat/completions -H 'Content-Type: application/json' \\")
        print(
            f'    -d \'{{"model": "{model.id}", "messages": '
            f'[{{"role": "user", "content": "What is the capital of France?"}}]}}\''
        )
        print("Press Ctrl-C to stop.\n", flush=True)
        while not stop and all(p.poll() is None for p in procs):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(procs)
    failed = [p for p in procs if p.returncode not in (0, -signal.SIGTERM, None)]
    return 1 if failed and not stop else 0
