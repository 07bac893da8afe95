"""The optional genai harness: lazy import, a clear install message, and greedy golden text."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from cortex_genai import GenaiHarness
from cortex_genai.harness import import_genai
from tokenizers import Tokenizer

from cortex.harness import Finish, GenerationRequest, HarnessError, LoadSpec
from tests.neuron.onnxtiny import GOLDEN, TINY, text_of
from tests.neuron.test_onnx_layouts import genai_folder

HAVE_GENAI = importlib.util.find_spec("onnxruntime_genai") is not None


def test_importing_the_harness_does_not_import_genai() -> None:
    """The package imports without loading onnxruntime_genai (or numpy)."""
    assert GenaiHarness.name == "genai"
    code = (
        "import sys, cortex_genai; print(sorted({'onnxruntime_genai', 'numpy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without onnxruntime-genai, loading names the pip package to install."""
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)
    with pytest.raises(HarnessError, match="pip install onnxruntime-genai"):
        import_genai()
    assert GenaiHarness().providers() == []


@pytest.mark.skipif(not HAVE_GENAI, reason="onnxruntime-genai is not installed")
async def test_genai_greedy_text_equals_the_golden_text(tmp_path: Path) -> None:
    """onnxruntime-genai's loop on the tiny genai-layout model streams the golden greedy text."""
    folder = genai_folder(tmp_path / "genai")
    model = await GenaiHarness().load(LoadSpec("tiny", str(folder)))
    tokenizer = Tokenizer.from_file(str(TINY / "tokenizer.json"))
    for case in GOLDEN["greedy"]:
        steps = len(case["ids"])
        request = GenerationRequest(prompt=case["prompt"], temperature=0, max_tokens=steps)
        events = [e async for e in model.generate(request)]
        assert text_of(events) == tokenizer.decode(case["ids"])
        assert events[-1] == Finish("length", len(case["prompt_ids"]), steps)
    await model.unload()


async def test_genai_counts_tokens_like_the_onnx_harness_without_genai() -> None:
    """count_tokens reads only the tokenizer and template: the same count as cortex_onnx."""
    from cortex_onnx import OnnxHarness

    spec = LoadSpec(model_id="tiny", source_path=str(TINY))
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    genai = await GenaiHarness().count_tokens(spec, messages, None, None)
    assert genai == await OnnxHarness().count_tokens(spec, messages, None, None)
    assert genai > 5
