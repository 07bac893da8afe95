"""``cortex bootstrap``: install the neuron's native dependencies into a private venv.

From PyPI, or from a wheelhouse folder (``--wheelhouse DIR``, or ``wheelhouse/``
next to the pyz) for hosts without internet; ``build_pyz.py --wheelhouse``
prepares one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from cortex import venvs


def default_wheelhouse() -> str | None:
    """A ``wheelhouse`` folder beside the pyz (or the working directory)."""
    here = os.path.dirname(os.path.abspath(sys.argv[0]))
    for folder in (here, os.getcwd()):
        candidate = os.path.join(folder, "wheelhouse")
        if os.path.isdir(candidate):
            return candidate
    return None


def bootstrap(gpu: bool, wheelhouse: str | None) -> int:
    venv = venvs.neuron_venv()
    packages = venvs.NEURON_PACKAGES_GPU if gpu else venvs.NEURON_PACKAGES
    try:
        venvs.create(venv, packages, wheelhouse)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"cortex: bootstrap failed: {exc}", file=sys.stderr)
        return 1
    print(f"cortex: the neuron's dependencies are in {venv}; `cortex neuron` will use them")
    return 0


def run(args: argparse.Namespace) -> int:
    return bootstrap(args.gpu, args.wheelhouse or default_wheelhouse())
