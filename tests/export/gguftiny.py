"""Shared set-up for the GGUF exporter tests: the tiny model's weights, GGUFs of it, logits."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime as ort

from cortex.export.llama_onnx import LlamaConfig
from tests.neuron.onnxtiny import GOLDEN, TINY, load_tool

WRITER: ModuleType = load_tool("gguf_writer")
CONFIG = LlamaConfig.from_hf(json.loads((TINY / "config.json").read_text(encoding="utf-8")))
WEIGHTS: dict[str, Any] = load_tool("make_tiny_model").init_weights(CONFIG)


def write_tiny_gguf(path: Path, quant: str, arch: str = "llama") -> Path:
    """The tiny model as a GGUF with its linears in ``quant``."""
    WRITER.llama_gguf(path, CONFIG, WEIGHTS, TINY, quant, arch)
    return path


def logits(folder: Path, ids: list[int]) -> Any:
    """Full-sequence logits [seq, vocab] of a model folder's graph, no cache."""
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    feed: dict[str, Any] = {
        "input_ids": np.array([ids]),
        "attention_mask": np.ones((1, len(ids)), np.int64),
        "position_ids": np.arange(len(ids))[None],
    }
    for port in sess.get_inputs():
        if port.name.startswith("past_key_values"):
            feed[port.name] = np.zeros((1, CONFIG.num_kv_heads, 0, CONFIG.head_size), np.float32)
    return sess.run(["logits"], feed)[0][0]


def golden_sequences() -> list[list[int]]:
    """Each golden prompt followed by its greedy continuation."""
    return [g["prompt_ids"] + g["ids"] for g in GOLDEN["greedy"]]
