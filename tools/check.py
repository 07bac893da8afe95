"""The whole test suite in one command: venv, lint, types, tests, the built pyz.

    python3 tools/check.py [--quick] [pytest args...]

Creates ``.venv`` (once) with the dev and neuron extras, then runs ruff (lint and
format), mypy (strict on cortex/ and harnesses/), and pytest, whose end-to-end
tests build cortex.pyz and run it. ``--quick`` skips tests marked slow. Exits
non-zero on the first failing step.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
PY = os.path.join(VENV, "bin", "python")


def step(name: str, *argv: str) -> None:
    print(f"\n==> {name}: {' '.join(argv)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, check=False)
    print(f"==> {name}: exit {result.returncode} in {time.monotonic() - started:.0f} s", flush=True)
    if result.returncode != 0:
        sys.exit(result.returncode)


def main() -> None:
    args = sys.argv[1:]
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    if not os.path.exists(PY):
        step("venv", sys.executable, "-m", "venv", VENV)
    step("install", PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-e", f"{ROOT}[dev,neuron,fast]")  # fmt: skip
    step("ruff check", PY, "-m", "ruff", "check", ".")
    step("ruff format", PY, "-m", "ruff", "format", "--check", ".")
    step("mypy", PY, "-m", "mypy")
    marks = ["-m", "not slow"] if quick else []
    step("pytest", PY, "-m", "pytest", "-p", "no:cacheprovider", *marks, *args)


if __name__ == "__main__":
    main()
