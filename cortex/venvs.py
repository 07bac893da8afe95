"""Private virtual environments for the neuron's native dependencies.

I/O: creates venvs and runs pip. ``cortex bootstrap`` installs onnxruntime,
numpy, tokenizers and jinja2 into a venv made with this same interpreter; the
neuron then adds that venv's site-packages to ``sys.path`` at start, so the
single-file pyz stays pure Python and the host's system Python stays untouched.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

NEURON_PACKAGES = ("onnxruntime", "numpy", "tokenizers", "jinja2")
NEURON_PACKAGES_GPU = ("onnxruntime-gpu", "numpy", "tokenizers", "jinja2")
BOOTSTRAP_HINT = "python3 cortex.pyz bootstrap  (add --gpu on a CUDA host)"


def data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "cortex")


def neuron_venv() -> str:
    """One venv per Python minor version: compiled wheels are version-specific."""
    override = os.environ.get("CORTEX_NEURON_VENV")
    if override:
        return override
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return os.path.join(data_dir(), f"neuron-venv-{tag}")


def site_packages(venv: str) -> list[str]:
    return sorted(glob.glob(os.path.join(venv, "lib", "python*", "site-packages")))


def activate(venv: str | None = None) -> bool:
    """Make the private venv's packages importable here; False when there is none."""
    paths = [p for p in site_packages(venv or neuron_venv()) if p not in sys.path]
    sys.path.extend(paths)
    return bool(paths)


def missing(
    modules: tuple[str, ...] = ("onnxruntime", "numpy", "tokenizers", "jinja2"),
) -> list[str]:
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]


def create(venv: str, packages: tuple[str, ...], wheelhouse: str | None) -> None:
    """Create ``venv`` with this interpreter and install ``packages`` into it."""
    if not os.path.exists(os.path.join(venv, "bin", "python")):
        print(f"cortex: creating {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "--disable-pip-version-check"]
    source = ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    print(
        f"cortex: installing {', '.join(packages)}" + (f" from {wheelhouse}" if wheelhouse else ""),
        flush=True,
    )
    subprocess.run([*pip, "install", "--progress-bar", "on", *source, *packages], check=True)
