"""The built cortex.pyz, run from an empty folder by plain interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from tests.e2e.procs import free_port, python_versions, running

# The pyz must not see this checkout or the test venv's packages.
BARE_ENV = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}


def run_pyz(pyz: str, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-I", pyz, *args],
        cwd=os.path.dirname(pyz),
        capture_output=True,
        text=True,
        timeout=60,
        env=BARE_ENV,
        check=False,
    )


def test_help_and_version_run_from_the_single_file(pyz: str) -> None:
    """--help lists the roles and --version names the release."""
    help_text = run_pyz(pyz, "--help")
    assert help_text.returncode == 0, help_text.stderr
    for command in ("gateway", "neuron", "status", "up", "bootstrap"):
        assert command in help_text.stdout
    version = run_pyz(pyz, "--version")
    assert version.stdout.startswith("cortex ")


@pytest.mark.parametrize("python", python_versions() or [sys.executable])
def test_one_pyz_runs_on_every_supported_python(pyz: str, python: str) -> None:
    """The same file imports both roles on each installed Python from 3.10 up."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import cortex.gateway.app, cortex.neuron.app; print('ok')"
    )
    result = subprocess.run(
        [python, "-I", "-c", code, pyz], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_harness_entry_points_are_found_inside_the_pyz(pyz: str) -> None:
    """The cortex.harnesses entry points resolve from the dist-info in the zip."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from cortex.neuron.plugins import HarnessRegistry; r = HarnessRegistry(); "
        "print(r.names, type(r.get('echo')).__module__)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code, pyz],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == "['echo', 'genai', 'onnx'] cortex_echo", result.stderr


def test_config_error_exits_2_without_a_traceback(pyz: str) -> None:
    """A bad config names the file, the key and the reason, and exits 2."""
    bad = os.path.join(os.path.dirname(pyz), "bad.toml")
    with open(bad, "w", encoding="utf-8") as f:
        f.write('[gateway]\nlisten = "x:1"\npol_interval_s = 3\n')
    result = run_pyz(pyz, "gateway", "-c", bad)
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "pol_interval_s" in result.stderr
    assert "Traceback" not in result.stderr


def _post(url: str, body: dict[str, object]) -> bytes:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def test_neuron_and_gateway_from_the_pyz_serve_a_request(pyz: str) -> None:
    """A neuron and a gateway started from the single file answer chat, stream and not."""
    folder = os.path.dirname(pyz)
    with open(os.path.join(folder, "neuron.toml"), "w", encoding="utf-8") as f:
        f.write('host = "127.0.0.1"\nport = 0\ndefault_harness = "echo"\n')
    neuron_cmd = [sys.executable, "-I", pyz, "neuron", "-c", "neuron.toml"]
    with running(neuron_cmd, "neuron ready", cwd=folder, env=BARE_ENV) as (_, neuron_port):
        with open(os.path.join(folder, "models.toml"), "w", encoding="utf-8") as f:
            f.write('[[models]]\nid = "echo"\nharness = "echo"\n')
        with open(os.path.join(folder, "cortex.toml"), "w", encoding="utf-8") as f:
            f.write(
                f'[gateway]\nlisten = "127.0.0.1:{free_port()}"\nmetrics_listen = "127.0.0.1:0"\n'
                f'[[neurons]]\nname = "local"\nendpoint = "http://127.0.0.1:{neuron_port}"\n'
            )
        gateway_cmd = [sys.executable, "-I", pyz, "gateway", "-c", "cortex.toml"]
        with running(gateway_cmd, "gateway ready", cwd=folder, env=BARE_ENV) as (_, port):
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            body = {"model": "echo", "messages": [{"role": "user", "content": "from the pyz"}]}
            answer = json.loads(_post(url, body))
            streamed = _post(url, {**body, "stream": True}).decode()
    assert answer["choices"][0]["message"]["content"] == "from the pyz"
    assert streamed.rstrip().endswith("data: [DONE]")
    assert '"content":"pyz"' in streamed


def test_the_hosts_compiled_aiohttp_is_preferred_and_pure_can_be_forced(pyz: str) -> None:
    """With a compiled aiohttp installed, the pyz loads it; CORTEX_PURE=1 keeps the bundled one."""
    code = (
        "import sys; from cortex.speedups import prefer_host_packages, describe; "
        "prefer_host_packages(sys.argv[1]); import aiohttp; "
        "print(describe(), aiohttp.__file__.startswith(sys.argv[1]))"
    )
    env = {**BARE_ENV, "PYTHONPATH": pyz}
    host = subprocess.run(
        [sys.executable, "-c", code, pyz], capture_output=True, text=True, env=env, check=False
    )
    pure = subprocess.run(
        [sys.executable, "-c", code, pyz],
        capture_output=True,
        text=True,
        env={**env, "CORTEX_PURE": "1"},
        check=False,
    )
    assert "(compiled)" in host.stdout and host.stdout.strip().endswith("False"), host.stderr
    assert "(pure-Python)" in pure.stdout and pure.stdout.strip().endswith("True"), pure.stderr
