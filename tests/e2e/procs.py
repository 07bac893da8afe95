"""Real cortex processes for end-to-end tests: start, wait for readiness, stop.

Each process prints "<role> ready on port N" once bound; tests read that line
instead of sleeping, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence

READY_BOUND_S = 60.0
STOP_BOUND_S = 20.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(
    argv: Sequence[str], ready: str, cwd: str | None = None, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start ``argv``, wait for the ``ready`` line, yield (process, port), then stop it."""
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        port = wait_ready(proc, ready)
        yield proc, port
    finally:
        stop(proc)


def wait_ready(proc: subprocess.Popen[str], ready: str) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_BOUND_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"{proc.args} exited ({proc.wait()}) before ready:\n{err}")
        if line.startswith(ready):
            return int(line.split("port ")[1].split(",")[0])
    proc.kill()
    raise AssertionError(f"{proc.args} not ready in {READY_BOUND_S} s")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
    return proc.returncode


def python_versions() -> list[str]:
    """Other interpreters on this machine (3.10 and newer) that the pyz should run on."""
    import glob
    import re

    found = {}
    patterns = (
        "/usr/bin/python3.1[0-9]",
        os.path.expanduser("~/.pyenv/versions/3.1[0-9]*/bin/python3"),
    )
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            match = re.search(r"3\.(1[0-9])", path)
            if match and match[1] not in found:
                found[match[1]] = path
    return [found[k] for k in sorted(found)]
