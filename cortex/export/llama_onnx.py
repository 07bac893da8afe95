"""Build a Llama-architecture decoder as an ONNX graph from numpy weights named like HF's.

Pure construction (numpy + onnx, imported lazily); ``cortex.export.model_files`` writes the
result. Two I/O layouts:

- ``"optimum"``: optimum's decoder-with-past layout. Inputs ``input_ids``, ``attention_mask``,
  ``position_ids``, ``past_key_values.N.key/.value`` ([batch, kv_heads, past, head_dim]);
  outputs ``logits`` and ``present.N.key/.value`` (past + new). Plain ONNX ops, opset 17.
- ``"genai"``: the onnxruntime-genai builder's layout. No ``position_ids``; attention is
  ``com.microsoft.GroupQueryAttention`` with rotary inside and one preallocated KV buffer
  ([batch, kv_heads, max_length, head_dim]) that ``present.N.*`` shares in place.

Grouped-query attention (fewer KV heads than query heads) works in both. Weights are float32
arrays, stored as float32 or float16 (``weight_dtype``; computed in float32 either way), or
``cortex.export.nbits.Int4Weight`` linears, which become com.microsoft ``MatMulNBits``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array = npt.NDArray[np.float32]

OPSET = 17
LAYOUTS = ("optimum", "genai")
WEIGHT_DTYPES = ("float32", "float16")
MICROSOFT_OPS = ("GroupQueryAttention", "MatMulNBits")


@attrs.frozen
class LlamaConfig:
    """The hyper-parameters the graph needs (HF ``config.json`` names in ``from_hf``)."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rms_eps: float = 1e-6
    tie_word_embeddings: bool = False
    head_dim: int = 0  # 0: hidden_size // num_heads

    @property
    def head_size(self) -> int:
        """The per-head width."""
        return self.head_dim or self.hidden_size // self.num_heads

    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> LlamaConfig:
        """Read a Hugging Face Llama ``config.json`` dict."""
        heads = int(config["num_attention_heads"])
        return cls(
            num_layers=int(config["num_hidden_layers"]),
            hidden_size=int(config["hidden_size"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads", heads)),
            intermediate_size=int(config["intermediate_size"]),
            vocab_size=int(config["vocab_size"]),
            max_position_embeddings=int(config.get("max_position_embeddings", 2048)),
            rope_theta=float(config.get("rope_theta", 10000.0)),
            rms_eps=float(config.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            head_dim=int(config.get("head_dim") or 0),
        )

    def to_hf(self) -> dict[str, Any]:
        """The ``config.json`` dict that ``from_hf`` reads back."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "num_hidden_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_size,
            "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        }


def weight_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Every weight the graph needs, HF-named, with its HF shape ([out, in] for linears)."""
    h, hd, inter = config.hidden_size, config.head_size, config.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (config.vocab_size, h),
        "model.norm.weight": (h,),
    }
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (config.vocab_size, h)
    for n in range(config.num_layers):
        p = f"model.layers.{n}."
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "self_attn.q_proj.weight"] = (config.num_heads * hd, h)
        shapes[p + "self_attn.k_proj.weight"] = (config.num_kv_heads * hd, h)
        shapes[p + "self_attn.v_proj.weight"] = (config.num_kv_heads * hd, h)
        shapes[p + "self_attn.o_proj.weight"] = (h, config.num_heads * hd)
        shapes[p + "mlp.gate_proj.weight"] = (inter, h)
        shapes[p + "mlp.up_proj.weight"] = (inter, h)
        shapes[p + "mlp.down_proj.weight"] = (h, inter)
    return shapes


def check_weights(config: LlamaConfig, weights: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming every missing or misshapen weight."""
    problems = []
    for name, shape in weight_shapes(config).items():
        if name not in weights:
            problems.append(f"missing {name}")
        elif tuple(weights[name].shape) != shape:
            problems.append(f"{name} has shape {tuple(weights[name].shape)}, expected {shape}")
    if config.num_heads % config.num_kv_heads:
        problems.append(f"num_heads {config.num_heads} is not a multiple of {config.num_kv_heads}")
    if problems:
        raise ValueError("; ".join(problems))


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self) -> None:
        import onnx

        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0

    def op(self, op_type: str, *inputs: str, **attrs_: Any) -> str:
        """Add a one-output node; return its output name."""
        return self.ops(op_type, *inputs, outputs=1, **attrs_)[0]

    def ops(self, op_type: str, *inputs: str, outputs: int, **attrs_: Any) -> list[str]:
        """Add a node with ``outputs`` outputs; return their names."""
        self.count += 1
        names = [f"{op_type.lower()}_{self.count}_{i}" for i in range(outputs)]
        domain = "com.microsoft" if op_type in MICROSOFT_OPS else ""
        node = self.onnx.helper.make_node(
            op_type, list(inputs), names, name=f"{op_type}_{self.count}", domain=domain, **attrs_
        )
        self.nodes.append(node)
        return names

    def const(self, name: str, value: Any) -> str:
        import numpy as np

        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def rename(self, src: str, dst: str) -> None:
        """Expose ``src`` under the graph output name ``dst``."""
        self.nodes.append(self.onnx.helper.make_node("Identity", [src], [dst], name=f"out_{dst}"))


def build_decoder(
    config: LlamaConfig,
    weights: Mapping[str, Any],
    layout: str = "optimum",
    weight_dtype: str = "float32",
) -> Any:
    """Return an ``onnx.ModelProto`` of the decoder in ``layout`` (see the module docstring)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from cortex.export.nbits import BLOCK, Int4Weight

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weight_dtype must be one of {WEIGHT_DTYPES}, not {weight_dtype!r}")
    check_weights(config, weights)
    g = _Graph()
    hd, nh, nkv = config.head_size, config.num_heads, config.num_kv_heads
    stored: dict[str, str] = {}

    def w(name: str, transpose: bool = False) -> str:
        if name not in stored:
            arr = np.asarray(weights[name], dtype=weight_dtype)
            const = g.const(name, np.ascontiguousarray(arr.T if transpose else arr))
            stored[name] = const if weight_dtype == "float32" else g.op("Cast", const, to=1)
        return stored[name]

    def int4(x: str, name: str, weight: Int4Weight) -> str:
        n, k = weight.shape
        inputs = [g.const(name, weight.packed), g.const(name + "_scales", weight.scales.ravel())]
        if weight.zero_points is not None:
            inputs.append(g.const(name + "_zero_points", weight.packed_zero_points()))
        return g.op("MatMulNBits", x, *inputs, K=k, N=n, bits=4, block_size=BLOCK, accuracy_level=4)

    def rms_norm(x: str, weight: str) -> str:
        var = g.op("ReduceMean", g.op("Mul", x, x), axes=[-1], keepdims=1)
        inv = g.op("Reciprocal", g.op("Sqrt", g.op("Add", var, eps)))
        return g.op("Mul", g.op("Mul", x, inv), w(weight))

    def linear(x: str, name: str) -> str:
        weight = weights[name + ".weight"]
        if isinstance(weight, Int4Weight):
            y = int4(x, name + ".weight", weight)
        else:
            y = g.op("MatMul", x, w(name + ".weight", transpose=True))
        if name + ".bias" in weights:
            y = g.op("Add", y, w(name + ".bias"))
        return y

    eps = g.const("rms_eps", np.array(config.rms_eps, dtype=np.float32))
    ids_shape = g.op("Shape", "input_ids")
    hidden = g.op("Gather", w("model.embed_tokens.weight"), "input_ids", axis=0)
    if layout == "optimum":
        rope = _rope_tables(g, config)
        allowed = _attention_mask(g, ids_shape)
    else:
        gqa_inputs = _gqa_inputs(g, config)

    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])]
    mask_dims = ["batch", "total"]
    inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, mask_dims))
    if layout == "optimum":
        pos_dims = ["batch", "seq"]
        inputs.append(helper.make_tensor_value_info("position_ids", TensorProto.INT64, pos_dims))
    past_len, present_len = ("past", "total") if layout == "optimum" else ("max", "max")
    outputs = [
        helper.make_tensor_value_info(
            "logits", TensorProto.FLOAT, ["batch", "seq", config.vocab_size]
        )
    ]
    for n in range(config.num_layers):
        p = f"model.layers.{n}."
        for kind in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(
                    f"past_key_values.{n}.{kind}", TensorProto.FLOAT, ["batch", nkv, past_len, hd]
                )
            )
            outputs.append(
                helper.make_tensor_value_info(
                    f"present.{n}.{kind}", TensorProto.FLOAT, ["batch", nkv, present_len, hd]
                )
            )
        x = rms_norm(hidden, p + "input_layernorm.weight")
        q = linear(x, p + "self_attn.q_proj")
        k = linear(x, p + "self_attn.k_proj")
        v = linear(x, p + "self_attn.v_proj")
        if layout == "optimum":
            attn, pk, pv = _mha(g, config, n, (q, k, v), rope=rope, allowed=allowed)
        else:
            attn, pk, pv = g.ops(
                "GroupQueryAttention",
                q,
                k,
                v,
                f"past_key_values.{n}.key",
                f"past_key_values.{n}.value",
                *gqa_inputs,
                outputs=3,
                num_heads=nh,
                kv_num_heads=nkv,
                do_rotary=1,
                rotary_interleaved=0,
                scale=1.0 / math.sqrt(hd),
            )
        g.rename(pk, f"present.{n}.key")
        g.rename(pv, f"present.{n}.value")
        hidden = g.op("Add", hidden, linear(attn, p + "self_attn.o_proj"))
        x = rms_norm(hidden, p + "post_attention_layernorm.weight")
        gate = linear(x, p + "mlp.gate_proj")
        act = g.op("Mul", gate, g.op("Sigmoid", gate))
        up = linear(x, p + "mlp.up_proj")
        hidden = g.op("Add", hidden, linear(g.op("Mul", act, up), p + "mlp.down_proj"))
    x = rms_norm(hidden, "model.norm.weight")
    if config.tie_word_embeddings:
        flat = g.op("Reshape", x, g.const("flat_shape", np.array([-1, config.hidden_size])))
        vocab = g.const("vocab_dim", np.array([config.vocab_size], dtype=np.int64))
        logits_shape = g.op("Concat", ids_shape, vocab, axis=0)
        gemm = g.op("Gemm", flat, w("model.embed_tokens.weight"), transB=1)
        logits = g.op("Reshape", gemm, logits_shape)
    else:
        logits = linear(x, "lm_head")
    g.rename(logits, "logits")
    graph = helper.make_graph(g.nodes, "llama", inputs, outputs, initializer=g.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if any(node.domain == "com.microsoft" for node in g.nodes):
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="cortex.export")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _rope_tables(g: _Graph, config: LlamaConfig) -> tuple[str, str]:
    """cos and sin, [batch, 1, seq, head_dim], from ``position_ids`` (HF's float32 maths)."""
    import numpy as np

    hd = config.head_size
    inv = 1.0 / (config.rope_theta ** (np.arange(0, hd, 2, dtype=np.int64).astype(np.float32) / hd))
    pos = g.op("Unsqueeze", g.op("Cast", "position_ids", to=1), g.const("ax_last", [-1]))
    freqs = g.op("Mul", pos, g.const("inv_freq", inv.astype(np.float32)))
    emb = g.op("Concat", freqs, freqs, axis=-1)
    ax1 = g.const("ax_1", [1])
    return g.op("Unsqueeze", g.op("Cos", emb), ax1), g.op("Unsqueeze", g.op("Sin", emb), ax1)


def _attention_mask(g: _Graph, ids_shape: str) -> str:
    """Boolean [batch, 1, 1, seq, total]: causal over past + new, and not padding."""
    import numpy as np

    zero, one = g.const("i_zero", np.array(0)), g.const("i_one", np.array(1))
    total = g.op("Gather", g.op("Shape", "attention_mask"), one, axis=0)
    seq = g.op("Gather", ids_shape, one, axis=0)
    key_idx = g.op("Range", zero, total, one)
    query_idx = g.op("Range", g.op("Sub", total, seq), total, one)
    causal = g.op("LessOrEqual", key_idx, g.op("Unsqueeze", query_idx, g.const("ax_1b", [1])))
    padding = g.op("Cast", "attention_mask", to=9)
    padding = g.op("Unsqueeze", padding, g.const("ax_123", [1, 2, 3]))
    return g.op("And", causal, padding)


def _mha(
    g: _Graph,
    config: LlamaConfig,
    n: int,
    qkv: tuple[str, str, str],
    *,
    rope: tuple[str, str],
    allowed: str,
) -> tuple[str, str, str]:
    """Plain-op attention with RoPE and grouped heads; returns (output, present_k, present_v)."""
    import numpy as np

    hd, nh, nkv = config.head_size, config.num_heads, config.num_kv_heads
    half = hd // 2
    cos, sin = rope
    q, k, v = qkv

    def heads(x: str, count: int) -> str:
        shaped = g.op("Reshape", x, g.const(f"heads_{n}_{count}_{x}", [0, 0, count, hd]))
        return g.op("Transpose", shaped, perm=[0, 2, 1, 3])

    def rotate(x: str) -> str:
        lo = g.op("Slice", x, g.const(f"s0_{x}", [0]), g.const(f"s1_{x}", [half]), ax_last)
        hi = g.op("Slice", x, g.const(f"s2_{x}", [half]), g.const(f"s3_{x}", [hd]), ax_last)
        rotated = g.op("Concat", g.op("Neg", hi), lo, axis=-1)
        return g.op("Add", g.op("Mul", x, cos), g.op("Mul", rotated, sin))

    ax_last = "ax_last"
    qh = rotate(heads(q, nh))
    present_k = g.op("Concat", f"past_key_values.{n}.key", rotate(heads(k, nkv)), axis=2)
    present_v = g.op("Concat", f"past_key_values.{n}.value", heads(v, nkv), axis=2)
    groups = g.const(f"groups_{n}", [0, nkv, nh // nkv, -1, hd])
    q5 = g.op("Reshape", qh, groups)
    ax2 = g.const(f"ax_2_{n}", [2])
    k5 = g.op("Transpose", g.op("Unsqueeze", present_k, ax2), perm=[0, 1, 2, 4, 3])
    scores = g.op("Mul", g.op("MatMul", q5, k5), g.const(f"scale_{n}", np.float32(hd**-0.5)))
    lowest = g.const(f"lowest_{n}", np.float32(np.finfo(np.float32).min))
    probs = g.op("Softmax", g.op("Where", allowed, scores, lowest), axis=-1)
    out5 = g.op("MatMul", probs, g.op("Unsqueeze", present_v, ax2))
    out = g.op("Reshape", out5, g.const(f"merge_{n}", [0, nh, -1, hd]))
    out = g.op("Transpose", out, perm=[0, 2, 1, 3])
    return g.op("Reshape", out, g.const(f"flat_{n}", [0, 0, nh * hd])), present_k, present_v


def _gqa_inputs(g: _Graph, config: LlamaConfig) -> tuple[str, str, str, str]:
    """seqlens_k, total_sequence_length and the rotary caches GroupQueryAttention reads."""
    import numpy as np

    hd = config.head_size
    summed = g.op("ReduceSum", "attention_mask", g.const("ax_seq", [1]), keepdims=0)
    seqlens = g.op("Cast", g.op("Sub", summed, g.const("one64", np.array(1))), to=6)
    total = g.op("Gather", g.op("Shape", "attention_mask"), g.const("idx1", np.array(1)), axis=0)
    total = g.op("Cast", total, to=6)
    inv = 1.0 / (config.rope_theta ** (np.arange(0, hd, 2, dtype=np.int64).astype(np.float32) / hd))
    angles = np.outer(np.arange(config.max_position_embeddings, dtype=np.float32), inv)
    cos = g.const("cos_cache", np.cos(angles).astype(np.float32))
    sin = g.const("sin_cache", np.sin(angles).astype(np.float32))
    return seqlens, total, cos, sin
