"""Claude Code itself (print mode) against a real gateway and echo neuron on loopback.

The CLI is fetched once from the npm registry into .tools/ (pinned). It is the
strictest Anthropic client: a missing stream event makes it print nothing, retry
without streaming, or refuse to run a tool; these tests catch all three.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

import pytest

from tests.fleet import REPO, RunningGateway, local_fleet, sample

CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.197"
PREFIX = os.path.join(REPO, ".tools", "claude-code")
BINARY = os.path.join(PREFIX, "node_modules", ".bin", "claude")
MODELS = '[[models]]\nid = "echo"\nharness = "echo"\n'


@pytest.fixture(scope="session")
def claude(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The pinned Claude Code CLI, installed with npm on first use."""
    if not os.path.exists(BINARY):
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed, so Claude Code cannot be fetched on this machine")
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", PREFIX, CLAUDE_CODE],
            check=True,
            timeout=600,
            capture_output=True,
        )
    return BINARY


async def run_claude(claude: str, gw: RunningGateway, home: str, *args: str) -> str:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": home,
        "ANTHROPIC_BASE_URL": gw.url,
        "ANTHROPIC_API_KEY": "k1",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        claude, "-p", *args, "--model", "echo", env=env, cwd=home,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_claude_code_prints_the_streamed_answer(claude: str, tmp_path: object) -> None:
    """One streamed turn: Claude Code prints it, with no retry and no other request."""
    async with local_fleet(MODELS, api_keys=("k1",)) as (gw, _):
        out = await run_claude(claude, gw, str(tmp_path), "hello from claude code")
        answered = sample(
            gw, "cortex_requests_total", model="echo", node="n1", api="anthropic", code="200"
        )
    assert out.strip().endswith("hello from claude code")
    assert answered == 1  # a broken stream makes Claude Code re-send without streaming


async def test_claude_code_runs_a_tool_and_reads_its_result(claude: str, tmp_path: object) -> None:
    """The echo model asks for Bash; Claude Code runs it and sends the result back."""
    call = '@@tool:Bash:{"command":"echo cortex-tool-ran","description":"print a marker"}@@'
    async with local_fleet(MODELS, api_keys=("k1",)) as (gw, _):
        out = await run_claude(claude, gw, str(tmp_path), call, "--allowedTools", "Bash")
    assert "TOOL_RESULT_SEEN: cortex-tool-ran" in out


async def test_claude_code_stream_json_reports_success(claude: str, tmp_path: object) -> None:
    """Its stream-json result is a success with the usage our stream reported."""
    async with local_fleet(MODELS, api_keys=("k1",)) as (gw, _):
        out = await run_claude(
            claude, gw, str(tmp_path), "count me", "--output-format", "stream-json", "--verbose"
        )
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    result = events[-1]
    assert result["type"] == "result" and result["subtype"] == "success"
    assert result["is_error"] is False
    assert result["result"].strip().endswith("count me")
    assert result["usage"]["output_tokens"] > 0
