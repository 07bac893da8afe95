"""Export a Hugging Face checkpoint folder through optimum's ONNX exporter, in the tool venv.

``optimum_command`` is the pure command line; ``export_checkpoint`` runs it and then copies the
tokenizer files and chat template into the destination so the ONNX harness loads it as is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence

from cortex.export import ExportError

TASK = "text-generation-with-past"
TEXT_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
    "config.json",
)
Runner = Callable[[Sequence[str]], int]


def check_checkpoint(src: str) -> None:
    """Raise ``ExportError`` unless ``src`` looks like a HF checkpoint folder."""
    if not os.path.isfile(os.path.join(src, "config.json")):
        raise ExportError(f"{src} has no config.json: not a Hugging Face checkpoint folder")
    if not os.path.isfile(os.path.join(src, "tokenizer.json")):
        raise ExportError(f"{src} has no tokenizer.json (the ONNX harness tokenizes with it)")


def optimum_command(
    python: str, src: str, dest: str, dtype: str = "fp32", device: str = "cpu"
) -> list[str]:
    """``optimum-cli export onnx`` for a decoder with past, from beside the venv's python."""
    if dtype == "int4":
        raise ExportError(
            "--dtype int4 is not available for Hugging Face checkpoints; export fp32 or fp16, "
            "or convert a Q4_0/Q4_1 GGUF, which maps to int4 losslessly"
        )
    if dtype == "fp16" and device != "cuda":
        raise ExportError("optimum exports fp16 only with --device cuda")
    command = [os.path.join(os.path.dirname(python), "optimum-cli"), "export", "onnx"]
    command += ["--model", os.path.abspath(src), "--task", TASK]
    if device == "cuda":
        command += ["--device", "cuda"]
    if dtype == "fp16":
        command += ["--dtype", "fp16"]
    return [*command, os.path.abspath(dest)]


def copy_text_files(src: str, dest: str) -> list[str]:
    """Copy the tokenizer, template and config files the export left out; return their names."""
    copied = []
    for name in TEXT_FILES:
        source, target = os.path.join(src, name), os.path.join(dest, name)
        if os.path.isfile(source) and not os.path.isfile(target):
            shutil.copyfile(source, target)
            copied.append(name)
    return copied


def export_checkpoint(
    python: str, src: str, dest: str, dtype: str, device: str, *, runner: Runner | None = None
) -> list[str]:
    """Run optimum in the tool venv, then make ``dest`` complete; return the copied files."""
    check_checkpoint(src)
    command = optimum_command(python, src, dest, dtype, device)
    status = (runner or _run)(command)
    if status != 0:
        raise ExportError(f"optimum's exporter failed with exit status {status}")
    return copy_text_files(src, dest)


def _run(command: Sequence[str]) -> int:
    return subprocess.run(list(command), check=False).returncode
