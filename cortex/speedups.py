"""Prefer the host's compiled aiohttp family (and uvloop) over the pyz's pure copies.

Python never imports compiled modules from a zip, so the bundled aiohttp runs its
pure-Python HTTP parser (about 40% of the compiled throughput). When the host
has aiohttp installed with its C speed-ups, a meta-path finder makes the whole
family (aiohttp, multidict, yarl, frozenlist, propcache, aiosignal,
aiohappyeyeballs) load from the host, where pip keeps them consistent; anything
the host lacks still comes from the pyz. ``CORTEX_PURE=1`` turns this off.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
from collections.abc import Sequence
from types import ModuleType

FAMILY = (
    "aiohttp",
    "multidict",
    "yarl",
    "frozenlist",
    "propcache",
    "aiosignal",
    "aiohappyeyeballs",
)
MIN_AIOHTTP = (3, 9)
_NATIVE = (".so", ".pyd")


class HostFirst(importlib.abc.MetaPathFinder):
    """Find the listed top-level packages on the host's paths before the pyz."""

    def __init__(self, names: Sequence[str], paths: list[str]) -> None:
        self.names = frozenset(names)
        self.paths = paths

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, self.paths)


def _compiled_aiohttp(paths: list[str]) -> bool:
    spec = importlib.machinery.PathFinder.find_spec("aiohttp", paths)
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = next(iter(spec.submodule_search_locations))
    try:
        files = os.listdir(folder)
        with open(os.path.join(folder, "__init__.py"), encoding="utf-8") as f:
            match = re.search(r'__version__\s*=\s*"(\d+)\.(\d+)', f.read())
    except OSError:
        return False
    if match is None or (int(match[1]), int(match[2])) < MIN_AIOHTTP:
        return False
    return any(f.startswith("_http_parser") and f.endswith(_NATIVE) for f in files)


def prefer_host_packages(archive: str) -> bool:
    """Install the finder if the host has compiled aiohttp; returns whether it did."""
    if os.environ.get("CORTEX_PURE"):
        return False
    host = [p for p in sys.path if p and os.path.abspath(p) != os.path.abspath(archive)]
    if not _compiled_aiohttp(host):
        return False
    found = [n for n in FAMILY if importlib.machinery.PathFinder.find_spec(n, host) is not None]
    sys.meta_path.insert(0, HostFirst(found, host))
    return True


def describe() -> str:
    """One line for logs and ``--version``: which HTTP stack and event loop run."""
    import aiohttp

    try:
        from aiohttp import _http_parser  # noqa: F401

        parser = "compiled"
    except ImportError:
        parser = "pure-Python"
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return f"aiohttp {aiohttp.__version__} ({parser}), {loop}"
