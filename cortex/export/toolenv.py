"""Where a conversion runs: this interpreter, or a private tool venv made on demand.

``plan_tools`` is a pure decision over what was probed; ``probe``, ``prepare`` and
``rerun_command`` are the small effects around it. The tool venv lives in
``$XDG_CACHE_HOME/cortex/tools-venv`` (default ``~/.cache``) and never holds the neuron's
runtime: torch and optimum go there, not into the neuron's environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

import attrs

GGUF_PACKAGES = ("onnx", "numpy")
GGUF_MODULES = ("onnx", "numpy")
HF_PACKAGES = ("optimum-onnx[onnxruntime]", "torch")
HF_MODULES = ("optimum.exporters.onnx", "torch")
INSIDE = "CORTEX_IN_TOOLS_VENV"  # set on the re-run, so a broken venv cannot loop
TORCH_WARNING = (
    "The Hugging Face export needs torch and optimum-onnx in {venv}. PyPI's Linux torch is the "
    "CUDA build: about 3 GB of downloads (torch plus the nvidia-* libraries) and 6 GB on disk. "
    "For the CPU-only build (~200 MB) set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu "
    "before running. GGUF files convert without torch."
)


@attrs.frozen
class ToolPlan:
    """How to run the conversion."""

    python: str | None  # None: in this interpreter; else this venv's python
    create_venv: bool  # the venv does not exist yet
    install: tuple[str, ...]  # packages to pip-install into it first
    venv: str


def tools_venv(env: Mapping[str, str]) -> str:
    """The tool venv's folder."""
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cortex", "tools-venv")


def venv_python(venv: str) -> str:
    """The interpreter inside ``venv``."""
    if sys.platform == "win32":
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


def plan_tools(
    *,
    here_has_modules: bool,
    venv: str,
    venv_exists: bool,
    venv_has_modules: bool,
    packages: Sequence[str],
    must_isolate: bool = False,
) -> ToolPlan:
    """Use this interpreter when it already has the modules (unless ``must_isolate``); else the
    tool venv, created and filled as needed."""
    if here_has_modules and not must_isolate:
        return ToolPlan(None, False, (), venv)
    install = () if venv_exists and venv_has_modules else tuple(packages)
    return ToolPlan(venv_python(venv), not venv_exists, install, venv)


def has_modules(python: str | None, modules: Sequence[str]) -> bool:
    """Whether ``python`` (None: this interpreter) imports every module."""
    if python is None:
        import importlib.util

        try:
            return all(importlib.util.find_spec(m) is not None for m in modules)
        except ModuleNotFoundError:
            return False
    if not os.path.isfile(python):
        return False
    code = "import " + ", ".join(modules)
    return subprocess.run([python, "-c", code], capture_output=True, check=False).returncode == 0


def probe(modules: Sequence[str], packages: Sequence[str], must_isolate: bool = False) -> ToolPlan:
    """Look at this interpreter and the tool venv, and plan."""
    venv = tools_venv(os.environ)
    python = venv_python(venv)
    here = not must_isolate and has_modules(None, modules)
    return plan_tools(
        here_has_modules=here,
        venv=venv,
        venv_exists=os.path.isfile(python),
        venv_has_modules=False if here else has_modules(python, modules),
        packages=packages,
        must_isolate=must_isolate,
    )


def prepare(plan: ToolPlan) -> None:
    """Create the venv and install what the plan says; pip's own output shows progress."""
    if plan.create_venv:
        print(f"creating the tool venv {plan.venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", plan.venv], check=True)
    if plan.install and plan.python:
        print(f"installing {' '.join(plan.install)} into {plan.venv}", flush=True)
        pip = [plan.python, "-m", "pip", "install", "--disable-pip-version-check"]
        subprocess.run([*pip, *plan.install], check=True)


def python_path() -> list[str]:
    """PYTHONPATH entries that make ``import cortex`` work elsewhere: the pyz file (it bundles
    the pure-Python dependencies), or the source root plus where attrs, cattrs and tomlkit are."""
    import importlib

    import cortex

    root = os.path.dirname(os.path.dirname(os.path.abspath(cortex.__file__)))
    if os.path.isfile(root):
        return [root]
    paths = [root]
    for name in ("attrs", "cattrs", "tomlkit"):
        module = importlib.import_module(name)
        parent = os.path.dirname(os.path.dirname(os.path.abspath(str(module.__file__))))
        if parent not in paths:
            paths.append(parent)
    return paths


def rerun_command(
    python: str, argv: Sequence[str], env: Mapping[str, str], paths: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ``cortex <argv>`` under ``python``."""
    child = dict(env)
    child["PYTHONPATH"] = os.pathsep.join(p for p in (*paths, env.get("PYTHONPATH")) if p)
    child[INSIDE] = "1"
    return [python, "-m", "cortex", *argv], child
