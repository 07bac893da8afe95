"""The Llama ONNX builder agrees with the numpy reference in both I/O layouts."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from cortex.export.llama_onnx import LlamaConfig, build_decoder, check_weights, weight_shapes
from cortex.export.model_files import save_model
from tests.neuron.onnxtiny import load_tool

CONFIG = LlamaConfig(
    num_layers=2,
    hidden_size=64,  # head size 16: GroupQueryAttention needs a multiple of 16
    num_heads=4,
    num_kv_heads=2,
    intermediate_size=48,
    vocab_size=64,
    max_position_embeddings=32,
)


def reference() -> ModuleType:
    return load_tool("llama_reference")


def random_weights(config: LlamaConfig, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        name: (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
        if len(shape) == 2
        else (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        for name, shape in weight_shapes(config).items()
    }


def session(config: LlamaConfig, weights: dict[str, Any], layout: str) -> Any:
    model = build_decoder(config, weights, layout)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_cached(sess: Any, config: LlamaConfig, ids: list[int], split: int, layout: str) -> Any:
    """Prefill ``ids[:split]`` then one token at a time; the logits of every position."""
    hd, nkv = config.head_size, config.num_kv_heads
    length = config.max_position_embeddings if layout == "genai" else 0
    past = {
        f"past_key_values.{n}.{kind}": np.zeros((1, nkv, length, hd), np.float32)
        for n in range(config.num_layers)
        for kind in ("key", "value")
    }
    names = [o.name for o in sess.get_outputs()]
    rows, done = [], 0
    for chunk in [ids[:split]] + [[t] for t in ids[split:]]:
        feed = {
            "input_ids": np.array([chunk]),
            "attention_mask": np.ones((1, done + len(chunk)), np.int64),
            **past,
        }
        if layout == "optimum":
            feed["position_ids"] = np.arange(done, done + len(chunk))[None]
        out = dict(zip(names, sess.run(None, feed), strict=True))
        past = {name: out[name.replace("past_key_values", "present")] for name in past}
        rows.append(out["logits"][0])
        done += len(chunk)
    return np.concatenate(rows)


@pytest.mark.parametrize("layout", ["optimum", "genai"])
@pytest.mark.parametrize("tied", [True, False])
def test_cached_logits_equal_the_reference_forward(layout: str, tied: bool) -> None:
    """Prefill plus cached single steps give the reference's full-sequence logits (<= 1e-4)."""
    config = LlamaConfig(**{**CONFIG.__getstate__(), "tie_word_embeddings": tied})
    weights = random_weights(config)
    ids = [3, 14, 15, 9, 26, 5, 35, 8]
    expected = reference().forward(config, weights, ids)
    got = run_cached(session(config, weights, layout), config, ids, split=3, layout=layout)
    assert np.abs(got - expected).max() <= 1e-4


def test_multi_query_attention_matches_the_reference() -> None:
    """One KV head shared by all query heads (MQA) still matches the reference."""
    config = LlamaConfig(**{**CONFIG.__getstate__(), "num_kv_heads": 1})
    weights = random_weights(config, seed=3)
    ids = [1, 2, 3, 4, 5]
    got = run_cached(session(config, weights, "optimum"), config, ids, split=2, layout="optimum")
    assert np.abs(got - reference().forward(config, weights, ids)).max() <= 1e-4


def test_missing_and_misshapen_weights_are_named() -> None:
    """check_weights lists every missing or wrongly shaped tensor by its HF name."""
    weights = random_weights(CONFIG)
    del weights["model.layers.1.mlp.up_proj.weight"]
    weights["model.norm.weight"] = np.ones(7, np.float32)
    with pytest.raises(ValueError, match=r"missing model\.layers\.1\.mlp\.up_proj\.weight") as info:
        check_weights(CONFIG, weights)
    assert "model.norm.weight has shape (7,)" in str(info.value)


def test_hf_config_round_trips() -> None:
    """to_hf and from_hf are inverse."""
    assert LlamaConfig.from_hf(CONFIG.to_hf()) == LlamaConfig(
        **{**CONFIG.__getstate__(), "head_dim": CONFIG.head_size}
    )


def test_save_model_writes_weights_beside_the_graph(tmp_path: Path) -> None:
    """The saved graph keeps its weights in model.onnx.data and loads back in onnxruntime."""
    files = save_model(build_decoder(CONFIG, random_weights(CONFIG)), str(tmp_path))
    assert files == ["model.onnx", "model.onnx.data"]
    assert (tmp_path / "model.onnx").stat().st_size < (tmp_path / "model.onnx.data").stat().st_size
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()][:3] == [
        "input_ids",
        "attention_mask",
        "position_ids",
    ]
