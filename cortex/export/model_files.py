"""Writing a built decoder: the ONNX file with external weights, and genai_config.json.

I/O: ``save_model`` writes files; ``genai_config`` is pure and describes a
``"genai"``-layout graph for onnxruntime-genai.
"""

from __future__ import annotations

import os
from typing import Any

from cortex.export.llama_onnx import LlamaConfig


def genai_config(config: LlamaConfig, eos_token_id: int | list[int]) -> dict[str, Any]:
    """The ``genai_config.json`` that describes a ``"genai"``-layout graph to its readers."""
    return {
        "model": {
            "type": "llama",
            "context_length": config.max_position_embeddings,
            "vocab_size": config.vocab_size,
            "eos_token_id": eos_token_id,
            "decoder": {
                "filename": "model.onnx",
                "num_hidden_layers": config.num_layers,
                "num_attention_heads": config.num_heads,
                "num_key_value_heads": config.num_kv_heads,
                "head_size": config.head_size,
                "hidden_size": config.hidden_size,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
            },
        },
        "search": {"max_length": config.max_position_embeddings, "past_present_share_buffer": True},
    }


def save_model(model: Any, folder: str, filename: str = "model.onnx") -> list[str]:
    """Write ``model`` with its weights in ``<filename>.data`` beside it; return the files."""
    import onnx

    data = filename + ".data"
    for stale in (filename, data):
        path = os.path.join(folder, stale)
        if os.path.exists(path):
            os.remove(path)
    onnx.save_model(
        model,
        os.path.join(folder, filename),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data,
        size_threshold=1024,
    )
    return [filename, data]
