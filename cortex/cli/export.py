"""``cortex export SRC DEST``: a GGUF file or Hugging Face checkpoint -> an ONNX model folder.

I/O: converts in this interpreter when it has onnx and numpy, else in the tool venv (made on
demand); the Hugging Face path always runs optimum there. Prints progress and what it wrote.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from cortex.export import toolenv

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def is_gguf(path: str) -> bool:
    """Whether ``path`` is a file that starts with the GGUF magic."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def human(size: float) -> str:
    """Bytes as a short human-readable size."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(f"  {message}", file=sys.stderr, flush=True)


def convert_gguf(src: str, dest: str, dtype: str, device: str = "cpu") -> int:
    """Convert a GGUF here or in the tool venv; print what was written; an exit status."""
    plan = toolenv.probe(toolenv.GGUF_MODULES, toolenv.GGUF_PACKAGES)
    if plan.python is not None:
        if os.environ.get(toolenv.INSIDE):
            print("cortex export: the tool venv lacks onnx/numpy", file=sys.stderr)
            return EXIT_FAILURE
        toolenv.prepare(plan)
        argv = ["export", src, dest, "--dtype", dtype, "--device", device, "--force"]
        command, env = toolenv.rerun_command(plan.python, argv, os.environ, toolenv.python_path())
        return subprocess.run(command, env=env, check=False).returncode
    from cortex.export.from_gguf import convert

    began = time.monotonic()
    print(f"converting {src} -> {dest} ({dtype})", flush=True)
    files = convert(src, dest, dtype, progress)
    for name, size in files:
        print(f"  {human(size):>9}  {os.path.join(dest, name)}")
    total = human(sum(size for _, size in files))
    print(f"wrote {dest}: {total} in {time.monotonic() - began:.1f} s", flush=True)
    return EXIT_OK


def export_hf(args: argparse.Namespace) -> int:
    """The Hugging Face path: optimum in the tool venv, after a warning about torch's size."""
    from cortex.export.from_hf import check_checkpoint, export_checkpoint, optimum_command

    check_checkpoint(args.src)
    plan = toolenv.probe(toolenv.HF_MODULES, toolenv.HF_PACKAGES, must_isolate=True)
    assert plan.python is not None
    optimum_command(plan.python, args.src, args.dest, args.dtype, args.device)  # validates
    if plan.install:
        print(toolenv.TORCH_WARNING.format(venv=plan.venv), file=sys.stderr)
        if not args.yes and input("Install them now? [y/N] ").strip().lower() not in ("y", "yes"):
            print("cortex export: not installed; nothing written", file=sys.stderr)
            return EXIT_FAILURE
        toolenv.prepare(plan)
    copied = export_checkpoint(plan.python, args.src, args.dest, args.dtype, args.device)
    for name in copied:
        print(f"  copied {name}")
    print(f"wrote {args.dest}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from cortex.export import ExportError

    src, dest = args.src, args.dest
    if os.path.isdir(dest) and os.listdir(dest) and not args.force:
        print(f"cortex export: {dest} is not empty (pass --force to replace it)", file=sys.stderr)
        return EXIT_USAGE
    try:
        if is_gguf(src):
            return convert_gguf(src, dest, args.dtype, args.device)
        if os.path.isdir(src):
            return export_hf(args)
    except ExportError as exc:
        print(f"cortex export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"cortex export: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    what = "does not exist" if not os.path.exists(src) else "is neither a GGUF file nor a folder"
    print(f"cortex export: {src} {what}", file=sys.stderr)
    return EXIT_USAGE
