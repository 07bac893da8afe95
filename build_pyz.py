"""Build ``cortex.pyz``: one file that runs either role with a plain ``python3``.

Pure-Python dependencies (aiohttp and its helpers, attrs, cattrs, tomlkit,
prometheus-client) are pip-installed into a staging folder as wheels resolved for
the oldest supported Python, with their dist-info (so harness entry points are
found inside the zip), then zipped with the stdlib ``zipapp``. The tiny demo model
goes inside too; ``cortex up`` extracts it to a cache folder. Native harness
dependencies are not bundled: ``cortex bootstrap`` installs them on a host, and
``--wheelhouse DIR`` downloads them here for hosts without internet.

    python3 build_pyz.py [-o cortex.pyz] [--wheelhouse DIR [--gpu]]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
import zipapp

ROOT = os.path.dirname(os.path.abspath(__file__))
OLDEST_PYTHON = "3.10"
RUNTIME = [
    "aiohttp>=3.9,<4",
    "attrs>=23.1",
    "cattrs>=23.2",
    "tomlkit>=0.12",
    "prometheus-client>=0.19",
]
NEURON_NATIVE = ["onnxruntime", "numpy", "tokenizers", "jinja2"]
NEURON_NATIVE_GPU = ["onnxruntime-gpu", "numpy", "tokenizers", "jinja2"]
# pip evaluates environment markers for the Python running it, not --python-version:
# these are what the runtime deps ask for only on older Pythons.
OLDER_PYTHON_EXTRAS = ["async-timeout>=4,<6", "exceptiongroup>=1.1.1", "typing-extensions>=4.14"]
DEMO_MODELS = ("tiny-chat",)

LAUNCHER = '''\
"""cortex.pyz entry: prefer the host's compiled aiohttp family, then run the CLI."""
import sys

from cortex.speedups import prefer_host_packages

prefer_host_packages(sys.path[0])

from cortex.__main__ import main  # noqa: E402

sys.exit(main())
'''


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def stage_dependencies(staging: str) -> None:
    # py3-none-any wheels only, chosen for the oldest Python we support, so one
    # pyz runs on every supported version (multidict 7, for one, needs 3.11).
    pip(
        "install", "--quiet", "--target", staging, "--no-compile",
        "--python-version", OLDEST_PYTHON, "--implementation", "py", "--abi", "none",
        "--platform", "any", "--only-binary=:all:", *RUNTIME, *OLDER_PYTHON_EXTRAS,
    )  # fmt: skip
    # cortex itself, with its dist-info: the cortex.harnesses entry points live there.
    pip("install", "--quiet", "--target", staging, "--no-compile", "--no-deps", "--upgrade", ROOT)


def stage_models(staging: str) -> None:
    for name in DEMO_MODELS:
        source = os.path.join(ROOT, "models", name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(staging, "cortex_models", name))


def tidy(staging: str) -> None:
    for name in ("bin", "share"):
        shutil.rmtree(os.path.join(staging, name), ignore_errors=True)
    for folder, dirs, _files in os.walk(staging):
        for d in [d for d in dirs if d == "__pycache__"]:
            shutil.rmtree(os.path.join(folder, d))
    # Legacy-layout bytecode (next to the source) is what zipimport reads; other
    # Python versions ignore it and compile from source.
    compileall.compile_dir(staging, quiet=1, legacy=True, optimize=0)


def build(output: str) -> str:
    with tempfile.TemporaryDirectory(prefix="cortex-pyz-") as staging:
        stage_dependencies(staging)
        stage_models(staging)
        with open(os.path.join(staging, "__main__.py"), "w", encoding="utf-8") as f:
            f.write(LAUNCHER)
        tidy(staging)
        zipapp.create_archive(staging, output, interpreter="/usr/bin/env python3", compressed=True)
    return output


def wheelhouse(folder: str, gpu: bool) -> None:
    """Wheels of the neuron's native dependencies, for hosts without internet."""
    os.makedirs(folder, exist_ok=True)
    pip("download", "--quiet", "--dest", folder, *(NEURON_NATIVE_GPU if gpu else NEURON_NATIVE))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=os.path.join(ROOT, "cortex.pyz"))
    parser.add_argument("--wheelhouse", help="also download the neuron's native wheels here")
    parser.add_argument("--gpu", action="store_true", help="with --wheelhouse: onnxruntime-gpu")
    args = parser.parse_args()
    path = build(args.output)
    print(f"built {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
    if args.wheelhouse:
        wheelhouse(args.wheelhouse, args.gpu)
        print(f"wheels for the neuron's native dependencies in {args.wheelhouse}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
