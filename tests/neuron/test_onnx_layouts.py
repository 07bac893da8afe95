"""Other graph layouts: onnxruntime-genai's shared KV buffer, and encoders for embeddings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

from cortex.export.llama_onnx import LlamaConfig, build_decoder
from cortex.export.model_files import genai_config, save_model
from tests.neuron.onnxtiny import GOLDEN, TINY, collect, load, load_tool, text_of

TEXT_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]


def genai_folder(dest: Path) -> Path:
    """The tiny model rebuilt with GroupQueryAttention and a genai_config.json, no config.json."""
    dest.mkdir()
    maker = load_tool("make_tiny_model")
    config = LlamaConfig.from_hf(json.loads((TINY / "config.json").read_text(encoding="utf-8")))
    save_model(build_decoder(config, maker.init_weights(config), "genai"), str(dest))
    eos = json.loads((TINY / "generation_config.json").read_text(encoding="utf-8"))["eos_token_id"]
    (dest / "genai_config.json").write_text(json.dumps(genai_config(config, eos)), encoding="utf-8")
    for name in TEXT_FILES:
        shutil.copy(TINY / name, dest / name)
    return dest


async def test_genai_layout_with_shared_kv_buffer_gives_the_golden_ids(tmp_path: Path) -> None:
    """A GroupQueryAttention graph whose present KV is written in place decodes the golden ids."""
    # fp32 GroupQueryAttention exists only on the CPU provider (CUDA runs it in fp16/bf16).
    model = await load(genai_folder(tmp_path / "genai"), provider="cpu")
    assert model.decoder.layout.kind == "genai"
    assert model.decoder.layout.shared_buffer
    assert model.decoder.layout.position_ids is None
    for case in GOLDEN["greedy"]:
        steps = len(case["ids"])
        events = await collect(model, prompt=case["prompt"], temperature=0, max_tokens=steps)
        tokenizer = Tokenizer.from_file(str(TINY / "tokenizer.json"))
        assert text_of(events) == tokenizer.decode(case["ids"])
    await model.unload()


def encoder_folder(dest: Path, table: np.ndarray) -> Path:
    """A one-op encoder: last_hidden_state is the embedding row of each token."""
    dest.mkdir()
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["b", "s", 8])
    node = helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"], axis=0)
    graph = helper.make_graph(
        [node], "enc", [ids, mask], [out], [numpy_helper.from_array(table, "table")]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(dest / "model.onnx"))
    (dest / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    shutil.copy(TINY / "tokenizer.json", dest / "tokenizer.json")
    return dest


async def test_encoder_embeddings_are_mean_pooled(tmp_path: Path) -> None:
    """embed() returns the mean of last_hidden_state over the tokens, one vector per input."""
    table = np.random.default_rng(0).standard_normal((4096, 8)).astype(np.float32)
    model = await load(encoder_folder(tmp_path / "enc", table))
    tokenizer = Tokenizer.from_file(str(TINY / "tokenizer.json"))
    texts = ["hello world", "The function returns"]
    vectors = await model.embed(texts)
    for text, vector in zip(texts, vectors, strict=True):
        expected = table[tokenizer.encode(text).ids].mean(axis=0)
        assert np.allclose(vector, expected, atol=1e-6)
    await model.unload()
