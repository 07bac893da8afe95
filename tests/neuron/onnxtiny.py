"""Shared set-up for the ONNX harness tests: the tiny model, its golden data, folder copies."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from cortex_onnx import OnnxHarness, OnnxModel

from cortex.harness import GenerationEvent, GenerationRequest, LoadSpec, TextDelta

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "models" / "tiny-chat"
GOLDEN: dict[str, Any] = json.loads((TINY / "golden.json").read_text(encoding="utf-8"))


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_tiny(dest: Path, edit: Callable[[Path], None] | None = None) -> Path:
    """A copy of the tiny model folder at ``dest``, optionally edited in place."""
    shutil.copytree(TINY, dest)
    if edit is not None:
        edit(dest)
    return dest


def edit_json(path: Path, **changes: Any) -> None:
    """Set keys in a JSON file; a value of ``None`` deletes the key."""
    value = json.loads(path.read_text(encoding="utf-8"))
    for key, new in changes.items():
        if new is None:
            value.pop(key, None)
        else:
            value[key] = new
    path.write_text(json.dumps(value), encoding="utf-8")


async def load(path: Path = TINY, **options: Any) -> OnnxModel:
    """Load a model folder through the harness."""
    return await OnnxHarness().load(LoadSpec("tiny", str(path), options=options))


async def collect(model: OnnxModel, **request: Any) -> list[GenerationEvent]:
    """All events of one generation."""
    return [event async for event in model.generate(GenerationRequest(**request))]


def text_of(events: list[GenerationEvent]) -> str:
    """The streamed text of a list of events."""
    return "".join(e.text for e in events if isinstance(e, TextDelta))
