"""A GGUF of the tiny model converts back into a folder the ONNX harness runs, faithfully."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from cortex.export import ggml
from cortex.export.from_gguf import convert
from cortex.export.gguf import GGUFFile
from cortex.export.llama_onnx import build_decoder
from cortex.export.model_files import save_model
from tests.export.gguftiny import (
    CONFIG,
    WEIGHTS,
    golden_sequences,
    logits,
    write_tiny_gguf,
)
from tests.neuron.onnxtiny import GOLDEN, TINY, collect, load, text_of

# Largest |logit difference| from the original float32 model, per GGUF type of the linears
# (logits of this random-weight model span about +-17; its errors are larger than a trained
# model's, so these bound the quantisation, not the converter).
BOUNDS = {"F32": 1e-4, "F16": 0.05, "Q8_0": 0.6, "Q5_1": 3.5, "Q4_0": 8.0, "Q4_1": 7.0}
TEXTS = [
    "def fibonacci(n):\n    return n",
    "Héllo, wörld! 東京 🚀 123456 — ‘quotes’",
    "<|im_start|>user\nHi<|im_end|>\n<tool_call>{}</tool_call>",
    "   spaces\t\ttabs\n\n\nnewlines  ",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """GGUFs of the tiny model in several types, each converted (cached for the module)."""
    root = tmp_path_factory.mktemp("gguf")
    out = {}
    for quant, dtype in [
        ("F32", "fp32"),
        ("F16", "fp32"),
        ("F32", "fp16"),
        ("Q8_0", "fp32"),
        ("Q5_1", "fp32"),
        ("Q4_0", "fp32"),
        ("Q4_1", "fp32"),
        ("Q4_0", "int4"),
        ("Q4_1", "int4"),
        ("F32", "int4"),
    ]:
        gguf = root / f"tiny-{quant}.gguf"
        if not gguf.exists():
            write_tiny_gguf(gguf, quant)
        out[quant, dtype] = root / f"{quant}-{dtype}"
        convert(str(gguf), str(out[quant, dtype]), dtype)
    return out


def original_logits() -> list[Any]:
    return [logits(TINY, ids) for ids in golden_sequences()]


@pytest.mark.parametrize("quant", list(BOUNDS))
def test_logits_match_the_original_within_the_quantisation_bound(
    exported: dict[tuple[str, str], Path], quant: str
) -> None:
    """Converted logits stay within each GGUF type's bound of the original model's."""
    for ids, expected in zip(golden_sequences(), original_logits(), strict=True):
        assert np.abs(logits(exported[quant, "fp32"], ids) - expected).max() <= BOUNDS[quant]


def test_int4_from_q4_0_keeps_its_weights(exported: dict[tuple[str, str], Path]) -> None:
    """Q4_0 blocks become MatMulNBits as they are: within 0.5 of the dequantized logits (the
    kernel's int8 activations, accuracy level 4, are the only difference)."""
    for ids in golden_sequences():
        fp32, int4 = logits(exported["Q4_0", "fp32"], ids), logits(exported["Q4_0", "int4"], ids)
        assert np.abs(int4 - fp32).max() <= 0.5


@pytest.mark.parametrize("quant", ["Q4_0", "Q4_1", "F32"])
def test_int4_stays_within_the_four_bit_bound(
    exported: dict[tuple[str, str], Path], quant: str
) -> None:
    """--dtype int4 writes MatMulNBits and stays within the Q4_0 bound of the original."""
    folder = exported[quant, "int4"]
    assert b"MatMulNBits" in (folder / "model.onnx").read_bytes()
    for ids, expected in zip(golden_sequences(), original_logits(), strict=True):
        assert np.abs(logits(folder, ids) - expected).max() <= BOUNDS["Q4_0"]


@pytest.mark.parametrize(("quant", "dtype"), [("F32", "fp32"), ("F16", "fp32"), ("F32", "fp16")])
def test_greedy_ids_equal_the_golden_ones(
    exported: dict[tuple[str, str], Path], quant: str, dtype: str
) -> None:
    """fp32 and f16 conversions pick the golden greedy ids at every step."""
    for case, ids in zip(GOLDEN["greedy"], golden_sequences(), strict=True):
        start = len(case["prompt_ids"]) - 1
        picks = logits(exported[quant, dtype], ids)[start:-1].argmax(axis=-1)
        assert picks.tolist() == case["ids"]


def test_fp16_halves_the_weights(exported: dict[tuple[str, str], Path]) -> None:
    """--dtype fp16 stores weights at half the size of fp32."""
    size = {d: (exported["F32", d] / "model.onnx.data").stat().st_size for d in ("fp32", "fp16")}
    assert size["fp16"] * 2 == pytest.approx(size["fp32"], rel=0.01)


def test_the_tokenizer_encodes_like_the_original(exported: dict[tuple[str, str], Path]) -> None:
    """The regenerated tokenizer.json gives the original ids and text, unicode included."""
    original = Tokenizer.from_file(str(TINY / "tokenizer.json"))
    rebuilt = Tokenizer.from_file(str(exported["F32", "fp32"] / "tokenizer.json"))
    for text in TEXTS:
        ids = original.encode(text, add_special_tokens=False).ids
        assert rebuilt.encode(text, add_special_tokens=False).ids == ids
        assert rebuilt.decode(ids, skip_special_tokens=False) == text


def test_the_chat_template_and_special_tokens_carry_over(
    exported: dict[tuple[str, str], Path],
) -> None:
    """chat_template.jinja, the EOS/pad tokens and the added tokens' special flags survive."""
    folder = exported["F32", "fp32"]
    template = (TINY / "chat_template.jinja").read_text(encoding="utf-8")
    assert (folder / "chat_template.jinja").read_text(encoding="utf-8") == template
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    original = json.loads((TINY / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert (config["eos_token"], config["pad_token"]) == ("<|im_end|>", "<|endoftext|>")
    assert config["added_tokens_decoder"] == original["added_tokens_decoder"]
    hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert hf["tie_word_embeddings"] is True
    assert hf["max_position_embeddings"] == CONFIG.max_position_embeddings


async def test_the_harness_serves_the_converted_folder(
    exported: dict[tuple[str, str], Path],
) -> None:
    """The harness loads the converted folder unchanged and chats with the golden greedy text."""
    original = await load(TINY)
    converted = await load(exported["F32", "fp32"])
    request: dict[str, Any] = {
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 12,
        "temperature": 0,
    }
    expected = text_of(await collect(original, **request))
    assert text_of(await collect(converted, **request)) == expected


def test_qwen2_gguf_keeps_rows_and_biases(tmp_path: Path) -> None:
    """A qwen2 GGUF is not un-permuted, and its q/k/v biases reach the graph (1e-4)."""
    rng = np.random.default_rng(7)
    weights = dict(WEIGHTS)
    for n in range(CONFIG.num_layers):
        for proj, rows in (("q", 4 * 32), ("k", 2 * 32), ("v", 2 * 32)):
            bias = rng.normal(0, 0.1, rows).astype(np.float32)
            weights[f"model.layers.{n}.self_attn.{proj}_proj.bias"] = bias
    from tests.export.gguftiny import WRITER

    WRITER.llama_gguf(tmp_path / "q.gguf", CONFIG, weights, TINY, "F32", "qwen2")
    convert(str(tmp_path / "q.gguf"), str(tmp_path / "q"), "fp32")
    save_model(build_decoder(CONFIG, weights), str(tmp_path))
    for ids in golden_sequences():
        assert np.abs(logits(tmp_path / "q", ids) - logits(tmp_path, ids)).max() <= 1e-4


def test_converted_folder_replaces_an_old_one_atomically(tmp_path: Path) -> None:
    """A second conversion replaces DEST and leaves no .partial folder behind."""
    gguf = write_tiny_gguf(tmp_path / "t.gguf", "Q8_0")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "stale.txt").write_text("old", encoding="utf-8")
    files = dict(convert(str(gguf), str(dest), "fp32"))
    assert "stale.txt" not in files and "model.onnx.data" in files
    assert not (tmp_path / "out.partial").exists()
    with GGUFFile(str(gguf)) as reader:
        assert reader.tensors["token_embd.weight"].ggml_type == ggml.Q8_0
