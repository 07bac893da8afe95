"""A pure-numpy Llama forward pass, written independently of the ONNX graph, for golden data.

No cache, no tricks: the whole sequence at once in float64, the way the HF modelling code reads.
``make_tiny_model.py`` records its greedy ids and logits; tests compare the harness against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def _rms_norm(x: F64, weight: F64, eps: float) -> F64:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def _rope(x: F64, positions: npt.NDArray[np.int64], theta: float) -> F64:
    """Rotate [heads, seq, head_dim] by position, HF's rotate_half convention."""
    hd = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    angles = np.outer(positions.astype(np.float64), inv)
    cos = np.cos(np.concatenate([angles, angles], axis=-1))
    sin = np.sin(np.concatenate([angles, angles], axis=-1))
    half = hd // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def forward(config: Any, weights: Mapping[str, Any], ids: Sequence[int]) -> F64:
    """Logits [seq, vocab] for ``ids`` with a ``LlamaConfig``-like ``config``."""
    w = {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}
    seq = len(ids)
    hd, nh, nkv = config.head_size, config.num_heads, config.num_kv_heads
    positions = np.arange(seq, dtype=np.int64)
    causal = np.tril(np.ones((seq, seq), dtype=bool))
    x = w["model.embed_tokens.weight"][np.asarray(ids)]
    for n in range(config.num_layers):
        p = f"model.layers.{n}."
        h = _rms_norm(x, w[p + "input_layernorm.weight"], config.rms_eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(seq, nh, hd).transpose(1, 0, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(seq, nkv, hd).transpose(1, 0, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(seq, nkv, hd).transpose(1, 0, 2)
        q = _rope(q, positions, config.rope_theta)
        k = np.repeat(_rope(k, positions, config.rope_theta), nh // nkv, axis=0)
        v = np.repeat(v, nh // nkv, axis=0)
        scores = np.where(causal, q @ k.transpose(0, 2, 1) / np.sqrt(hd), -np.inf)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attn = (scores / scores.sum(axis=-1, keepdims=True)) @ v
        x = x + attn.transpose(1, 0, 2).reshape(seq, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
        h = _rms_norm(x, w[p + "post_attention_layernorm.weight"], config.rms_eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1.0 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    x = _rms_norm(x, w["model.norm.weight"], config.rms_eps)
    head = w["model.embed_tokens.weight"] if config.tie_word_embeddings else w["lm_head.weight"]
    logits: F64 = x @ head.T
    return logits


def greedy(config: Any, weights: Mapping[str, Any], ids: Sequence[int], steps: int) -> list[int]:
    """``steps`` greedy token ids after ``ids``, recomputing the whole sequence each step."""
    out = list(ids)
    for _ in range(steps):
        out.append(int(np.argmax(forward(config, weights, out)[-1])))
    return out[len(ids) :]
