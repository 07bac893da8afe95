"""End-to-end fixtures: the real built cortex.pyz, copied to an empty folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> str:
    """cortex.pyz alone in an empty folder: built once per run (or $CORTEX_PYZ)."""
    folder = tmp_path_factory.mktemp("bare-host")
    target = str(folder / "cortex.pyz")
    prebuilt = os.environ.get("CORTEX_PYZ")
    if prebuilt:
        shutil.copy(prebuilt, target)
    else:
        subprocess.run(
            [sys.executable, os.path.join(REPO, "build_pyz.py"), "-o", target], check=True
        )
    return target
