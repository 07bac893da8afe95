"""Importing the harness package stays light: no onnxruntime, numpy, tokenizers or jinja2."""

from __future__ import annotations

import subprocess
import sys

from cortex_onnx import OnnxHarness

from cortex.harness import Harness

HEAVY = ("onnxruntime", "numpy", "tokenizers", "jinja2", "onnx")


def test_import_pulls_in_no_heavy_module() -> None:
    """A fresh interpreter importing cortex_onnx and building the harness loads none of them."""
    code = (
        "import sys, cortex_onnx; h = cortex_onnx.OnnxHarness(); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_harness_satisfies_the_contract() -> None:
    """OnnxHarness is a Harness named onnx that lists onnxruntime's providers."""
    harness = OnnxHarness()
    assert isinstance(harness, Harness)
    assert harness.name == "onnx"
    assert "CPUExecutionProvider" in harness.providers()
