"""`cortex export` plans its tool venv, builds optimum's command and reports what it wrote."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from cortex.__main__ import main
from cortex.export import ExportError, toolenv
from cortex.export.from_hf import export_checkpoint, optimum_command
from tests.export.gguftiny import write_tiny_gguf
from tests.neuron.onnxtiny import TINY


def test_this_interpreter_is_used_when_it_has_the_modules() -> None:
    """With onnx and numpy importable here, no venv is made or filled."""
    plan = toolenv.plan_tools(
        here_has_modules=True,
        venv="/v",
        venv_exists=False,
        venv_has_modules=False,
        packages=toolenv.GGUF_PACKAGES,
    )
    assert (plan.python, plan.create_venv, plan.install) == (None, False, ())


def test_a_missing_venv_is_created_and_filled() -> None:
    """Without the modules here, the tool venv is created and gets onnx and numpy."""
    plan = toolenv.plan_tools(
        here_has_modules=False,
        venv="/v",
        venv_exists=False,
        venv_has_modules=False,
        packages=toolenv.GGUF_PACKAGES,
    )
    assert plan.python == toolenv.venv_python("/v")
    assert plan.create_venv and plan.install == ("onnx", "numpy")


def test_a_ready_venv_is_reused_and_the_hf_path_always_isolates() -> None:
    """A venv that has the modules is used as is; torch never runs in this interpreter."""
    plan = toolenv.plan_tools(
        here_has_modules=True,
        venv="/v",
        venv_exists=True,
        venv_has_modules=True,
        packages=toolenv.HF_PACKAGES,
        must_isolate=True,
    )
    assert (plan.python, plan.create_venv, plan.install) == (toolenv.venv_python("/v"), False, ())


def test_the_tool_venv_follows_xdg_cache_home() -> None:
    """$XDG_CACHE_HOME/cortex/tools-venv, else ~/.cache/cortex/tools-venv."""
    assert toolenv.tools_venv({"XDG_CACHE_HOME": "/c"}) == os.path.join(
        "/c", "cortex", "tools-venv"
    )
    assert toolenv.tools_venv({}).endswith(os.path.join(".cache", "cortex", "tools-venv"))


def test_the_rerun_puts_cortex_on_pythonpath() -> None:
    """The re-run is `python -m cortex export ...` with cortex first on PYTHONPATH."""
    command, env = toolenv.rerun_command(
        "/v/bin/python", ["export", "a", "b"], {"PYTHONPATH": "/old"}, ["/x/cortex.pyz"]
    )
    assert command == ["/v/bin/python", "-m", "cortex", "export", "a", "b"]
    assert env["PYTHONPATH"] == os.pathsep.join(["/x/cortex.pyz", "/old"])
    assert env[toolenv.INSIDE] == "1"


def test_optimum_is_asked_for_a_decoder_with_past() -> None:
    """The command is optimum-cli export onnx --task text-generation-with-past, from the venv."""
    command = optimum_command("/v/bin/python", "src", "dest", "fp16", "cuda")
    assert command[:3] == [os.path.join("/v/bin", "optimum-cli"), "export", "onnx"]
    assert command[command.index("--task") + 1] == "text-generation-with-past"
    assert command[-5:-1] == ["--device", "cuda", "--dtype", "fp16"]
    assert command[-1] == os.path.abspath("dest")
    with pytest.raises(ExportError, match="only with --device cuda"):
        optimum_command("/v/bin/python", "src", "dest", "fp16", "cpu")


def test_the_hf_export_copies_what_the_harness_needs(tmp_path: Path) -> None:
    """After optimum runs, the tokenizer files and chat template are in DEST."""
    calls: list[Sequence[str]] = []

    def fake_optimum(command: Sequence[str]) -> int:
        calls.append(command)
        os.makedirs(command[-1], exist_ok=True)
        Path(command[-1], "model.onnx").write_bytes(b"")
        return 0

    dest = tmp_path / "out"
    copied = export_checkpoint(
        "/v/bin/python", str(TINY), str(dest), "fp32", "cpu", runner=fake_optimum
    )
    assert len(calls) == 1
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= set(copied)
    assert (dest / "chat_template.jinja").is_file()


def test_export_prints_the_files_it_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cortex export X.gguf DEST` converts in-process and lists every file with its size."""
    gguf = write_tiny_gguf(tmp_path / "t.gguf", "Q4_0")
    assert main(["export", str(gguf), str(tmp_path / "out"), "--dtype", "int4"]) == 0
    out = capsys.readouterr().out
    assert "model.onnx.data" in out and "wrote" in out


@pytest.mark.parametrize("problem", ["missing", "not-empty", "not-gguf"])
def test_bad_arguments_exit_2(tmp_path: Path, problem: str) -> None:
    """A missing source, a non-empty DEST or a file that is not a GGUF exits 2."""
    src, dest = tmp_path / "x.gguf", tmp_path / "out"
    if problem == "not-empty":
        write_tiny_gguf(src, "F32")
        dest.mkdir()
        (dest / "keep").write_text("x", encoding="utf-8")
    if problem == "not-gguf":
        src.write_bytes(b"hello")
    assert main(["export", str(src), str(dest)]) == 2
