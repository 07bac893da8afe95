"""Operator routes and the commands that call them, against a real gateway and neurons."""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from cortex.__main__ import _parser
from tests.fleet import (
    RunningGateway,
    chat,
    http,
    resident,
    start_gateway,
    start_neuron,
)

MODELS = (
    '[[models]]\nid = "a"\nharness = "echo"\nvram_mb = 400\naliases = ["alpha"]\n'
    '[[models]]\nid = "b"\nharness = "echo"\nvram_mb = 400\n'
    '[[models]]\nid = "huge"\nharness = "echo"\nvram_mb = 5000\n'
)
KEY = {"Authorization": "Bearer secret"}


async def post(gw: RunningGateway, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    async with http() as session, session.post(gw.url + path, json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_admin_load_unload_and_fleet_report() -> None:
    """Operators load and unload models by name and see nodes, models and why not loaded."""
    async with (
        start_neuron("n1", vram_mb=[1000]) as n1,
        start_neuron("n2", vram_mb=[2000]) as n2,
        start_gateway([n1, n2], MODELS, api_keys=("secret",)) as gw,
        http() as session,
    ):
        assert (await post(gw, "/admin/load", {"model": "a"}))[0] == 401
        status, body = await post(gw, "/admin/load", {"model": "alpha", "node": "n1"}, **KEY)
        assert (status, body["model"], body["node"]) == (200, "a", "n1"), body
        assert resident(n1) == {"a"}
        status, body = await post(gw, "/admin/load", {"model": "a", "node": "n1"}, **KEY)
        assert body["already_loaded"] is True
        assert (await post(gw, "/admin/load", {"model": "nope"}, **KEY))[0] == 404
        assert (await post(gw, "/admin/load", {"node": "n1"}, **KEY))[0] == 400
        status, body = await post(gw, "/admin/load", {"model": "huge"}, **KEY)
        assert status == 503
        assert "needs 5000 MB" in body["error"]["message"]

        async with session.get(gw.url + "/admin/fleet", headers=KEY) as r:
            fleet = await r.json()
        n1_report = fleet["nodes"][0]
        assert n1_report["name"] == "n1" and n1_report["healthy"] is True
        assert n1_report["devices"][0]["total_mb"] == 1000
        assert n1_report["devices"][0]["free_mb"] == 600
        row = n1_report["models"][0]
        assert (row["id"], row["status"], row["in_flight"], row["queued"]) == ("a", "loaded", 0, 0)
        why = {m["id"]: m["why_not_loaded"] for m in fleet["models"]}
        assert why["a"] is None
        assert "would load on n2" in why["b"]
        assert "needs 5000 MB" in why["huge"] and "best node 'n2' has 2000 MB free" in why["huge"]

        status, body = await post(gw, "/admin/unload", {"model": "a"}, **KEY)
        assert (status, body["nodes"]) == (200, ["n1"]), body
        assert resident(n1) == set()
        assert (await post(gw, "/admin/unload", {"model": "a"}, **KEY))[0] == 404
        assert resident(n2) == set()


async def test_reload_with_a_broken_file_keeps_the_old_catalogue(tmp_path: Path) -> None:
    """POST /admin/reload swaps in a good models.toml and refuses a broken one, keeping the old."""
    path = tmp_path / "models.toml"
    async with start_neuron("n1", vram_mb=[1000]) as n1, start_gateway([n1], MODELS) as gw:
        gw.state.models_path = str(path)
        path.write_text('[[models]]\nid = "fresh"\nharness = "echo"\n')
        status, body = await post(gw, "/admin/reload", {})
        assert (status, body["models"]) == (200, ["fresh"])
        path.write_text('[[models]]\nid = "fresh"\nvram_mb = "lots"\n')
        status, body = await post(gw, "/admin/reload", {})
        assert status == 400
        assert "vram_mb" in body["error"]["message"]
        assert "old catalogue is kept" in body["error"]["message"]
        assert gw.state.store.catalogue.ids == ("fresh",)
        async with http() as session:
            assert (await chat(session, gw, "fresh"))[0] == 200


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run one ``cortex`` command's ``run()`` in a thread, as the shell would."""
    args = _parser().parse_args(argv)
    command = importlib.import_module(f"cortex.cli.{args.command}")
    code = await asyncio.to_thread(command.run, args)
    out, err = capsys.readouterr()
    return code, out, err


async def test_status_load_unload_and_reload_commands_against_a_real_gateway(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cortex load`, `status`, `unload` and `reload` drive and report a real gateway."""
    monkeypatch.setenv("CORTEX_API_KEY", "secret")
    async with (
        start_neuron("n1", vram_mb=[1000]) as n1,
        start_gateway([n1], MODELS, api_keys=("secret",)) as gw,
    ):
        e = ("-e", gw.url)
        code, out, _ = await cli(capsys, "load", "a", "--node", "n1", *e)
        assert (code, out.strip()) == (0, "loaded a on n1")
        code, out, _ = await cli(capsys, "status", *e)
        assert code == 0
        assert "n1    up" in out
        assert "sim0 400/1000 MB used, 600 free" in out
        assert any(line.split()[:3] == ["a", "n1", "loaded"] for line in out.splitlines())
        assert "NOT LOADED" in out and "huge" in out
        code, out, _ = await cli(capsys, "status", "--json", *e)
        report = json.loads(out)
        assert report["health"]["status"] == "ok"
        assert report["nodes"][0]["models"][0]["id"] == "a"
        code, out, _ = await cli(capsys, "unload", "a", *e)
        assert (code, out.strip()) == (0, "unloaded a from n1")
        code, _, err = await cli(capsys, "unload", "a", *e)
        assert code == 1 and "404" in err and "not loaded" in err
        code, _, err = await cli(capsys, "reload", *e)
        assert code == 1 and "file not found" in err  # the fixture's models.toml is not on disk
        code, _, err = await cli(capsys, "status", *e, "--api-key", "wrong")
        assert code == 1 and "401" in err
        assert resident(n1) == set()
