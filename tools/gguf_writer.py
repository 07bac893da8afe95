"""Write GGUF files the way llama.cpp's convert_hf_to_gguf does, for tests of the GGUF exporter.

Reference quantizers (numpy transcriptions of ggml's ``quantize_row_*_ref``) for Q8_0, Q4_0,
Q4_1, Q5_0 and Q5_1, block packers for the K-quants, llama.cpp's Q/K row permutation, and a
writer that turns HF-named weights plus a ``tokenizers`` JSON into a Llama/Qwen2 GGUF.

Run: ``.venv/bin/python tools/gguf_writer.py OUT.gguf [--type Q4_1]`` (writes models/tiny-chat).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cortex.export import ggml  # noqa: E402

TYPE_IDS = {name: number for number, (name, _, _) in ggml.TYPES.items()}
ALIGNMENT = 32
F32 = np.float32


# ----- reference quantizers: float32 [rows, K] -> raw bytes [rows * K / 32 * size] -----


def _f16_bytes(values: Any) -> Any:
    return np.asarray(values, dtype=np.float16).reshape(-1, 1).view(np.uint8)


def _pack_nibbles(q: Any) -> Any:
    """[blocks, 32] of 0..15 -> [blocks, 16]: element j low, element j + 16 high."""
    q = q.astype(np.uint8)
    return q[:, :16] | (q[:, 16:] << 4)


def quantize_q8_0(x: Any) -> Any:
    b = np.asarray(x, dtype=F32).reshape(-1, 32)
    d = np.abs(b).max(axis=1) / 127.0
    inv = np.where(d == 0, 0.0, 1.0 / np.where(d == 0, 1.0, d))
    q = np.round(b * inv[:, None]).astype(np.int8)
    return np.concatenate([_f16_bytes(d), q.view(np.uint8)], axis=1).ravel()


def quantize_q4_0(x: Any) -> Any:
    b = np.asarray(x, dtype=F32).reshape(-1, 32)
    signed_max = b[np.arange(len(b)), np.abs(b).argmax(axis=1)]
    d = signed_max / -8.0
    inv = np.where(d == 0, 0.0, 1.0 / np.where(d == 0, 1.0, d))
    q = np.minimum(15, (b * inv[:, None] + 8.5).astype(np.int8))
    return np.concatenate([_f16_bytes(d), _pack_nibbles(q)], axis=1).ravel()


def quantize_q4_1(x: Any) -> Any:
    b = np.asarray(x, dtype=F32).reshape(-1, 32)
    lo, hi = b.min(axis=1), b.max(axis=1)
    d = (hi - lo) / 15.0
    inv = np.where(d == 0, 0.0, 1.0 / np.where(d == 0, 1.0, d))
    q = np.minimum(15, ((b - lo[:, None]) * inv[:, None] + 0.5).astype(np.int8))
    return np.concatenate([_f16_bytes(d), _f16_bytes(lo), _pack_nibbles(q)], axis=1).ravel()


def _qh_bytes(q: Any) -> Any:
    """The fifth bits of 32 values as a little-endian u32 per block."""
    bits = ((q >> 4) & 1).astype(np.uint8)
    return np.packbits(bits, axis=1, bitorder="little")


def quantize_q5_0(x: Any) -> Any:
    b = np.asarray(x, dtype=F32).reshape(-1, 32)
    signed_max = b[np.arange(len(b)), np.abs(b).argmax(axis=1)]
    d = signed_max / -16.0
    inv = np.where(d == 0, 0.0, 1.0 / np.where(d == 0, 1.0, d))
    q = np.minimum(31, (b * inv[:, None] + 16.5).astype(np.int8)).astype(np.uint8)
    parts = [_f16_bytes(d), _qh_bytes(q), _pack_nibbles(q & 0x0F)]
    return np.concatenate(parts, axis=1).ravel()


def quantize_q5_1(x: Any) -> Any:
    b = np.asarray(x, dtype=F32).reshape(-1, 32)
    lo, hi = b.min(axis=1), b.max(axis=1)
    d = (hi - lo) / 31.0
    inv = np.where(d == 0, 0.0, 1.0 / np.where(d == 0, 1.0, d))
    q = np.minimum(31, ((b - lo[:, None]) * inv[:, None] + 0.5).astype(np.int8)).astype(np.uint8)
    parts = [_f16_bytes(d), _f16_bytes(lo), _qh_bytes(q), _pack_nibbles(q & 0x0F)]
    return np.concatenate(parts, axis=1).ravel()


QUANTIZERS = {
    "Q8_0": quantize_q8_0,
    "Q4_0": quantize_q4_0,
    "Q4_1": quantize_q4_1,
    "Q5_0": quantize_q5_0,
    "Q5_1": quantize_q5_1,
}


def encode(x: Any, type_name: str) -> Any:
    """Raw GGUF bytes of a float32 array in ``type_name``."""
    x = np.asarray(x, dtype=F32)
    if type_name == "F32":
        return x.ravel().view(np.uint8)
    if type_name == "F16":
        return x.astype(np.float16).ravel().view(np.uint8)
    if type_name == "BF16":
        return (x.ravel().view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    return QUANTIZERS[type_name](x)


# ----- K-quant block packers: integer parts -> bytes, for layout tests -----


def pack_k_scales(scales: Any, mins: Any) -> Any:
    """8 six-bit scales and mins per block -> 12 bytes (the inverse of get_scale_min_k4)."""
    sc, mn = scales.astype(np.uint8), mins.astype(np.uint8)
    out = np.zeros((len(sc), 12), np.uint8)
    out[:, 0:4] = (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6)
    out[:, 4:8] = (mn[:, :4] & 63) | ((mn[:, 4:] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4)
    return out


def pack_q4_k(d: Any, dmin: Any, scales: Any, mins: Any, q: Any) -> Any:
    """q [blocks, 8, 32] in 0..15; value = d * scale * q - dmin * min per sub-block."""
    q = q.astype(np.uint8).reshape(-1, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)
    parts = [_f16_bytes(d), _f16_bytes(dmin), pack_k_scales(scales, mins), qs]
    return np.concatenate(parts, axis=1).ravel()


def pack_q5_k(d: Any, dmin: Any, scales: Any, mins: Any, q: Any) -> Any:
    """q [blocks, 8, 32] in 0..31; value = d * scale * q - dmin * min per sub-block."""
    q = q.astype(np.uint8)
    low = (q & 0x0F).reshape(-1, 4, 2, 32)
    qs = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(-1, 128)
    qh = np.zeros((len(q), 32), np.uint8)
    for sub in range(8):
        qh |= ((q[:, sub] >> 4) & 1) << sub
    parts = [_f16_bytes(d), _f16_bytes(dmin), pack_k_scales(scales, mins), qh, qs]
    return np.concatenate(parts, axis=1).ravel()


def pack_q6_k(d: Any, scales: Any, q: Any) -> Any:
    """q [blocks, 256] in 0..63: value = d * scales[i // 16] * (q - 32)."""
    q = q.astype(np.uint8).reshape(-1, 2, 4, 32)  # half, part, l (ggml's loop order)
    ql = np.zeros((len(q), 2, 64), np.uint8)
    ql[:, :, :32] = (q[:, :, 0] & 0x0F) | ((q[:, :, 2] & 0x0F) << 4)
    ql[:, :, 32:] = (q[:, :, 1] & 0x0F) | ((q[:, :, 3] & 0x0F) << 4)
    qh = sum(((q[:, :, part] >> 4) & 3) << (2 * part) for part in range(4)).astype(np.uint8)
    sc = scales.astype(np.int8).view(np.uint8)
    parts = [ql.reshape(-1, 128), qh.reshape(-1, 64), sc, _f16_bytes(d)]
    return np.concatenate(parts, axis=1).ravel()


# ----- llama.cpp conventions -----


def permute(w: Any, heads: int) -> Any:
    """convert_hf_to_gguf's ``LlamaModel.permute`` of q/k rows (HF rotate-half -> interleaved)."""
    w = np.asarray(w)
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf: str) -> str:
    """The GGUF name of an HF weight name."""
    if hf in GGUF_NAMES:
        return GGUF_NAMES[hf]
    _, _, layer, rest = hf.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{LAYER_NAMES[module]}.{kind}"


def tokenizer_metadata(tokenizer: Mapping[str, Any], pre: str = "gpt2") -> dict[str, Any]:
    """``tokenizer.ggml.*`` from a ``tokenizers`` byte-level BPE JSON, as convert_hf_to_gguf."""
    vocab = dict(tokenizer["model"]["vocab"])
    added = {t["content"]: t for t in tokenizer["added_tokens"]}
    for t in added.values():
        vocab[t["content"]] = t["id"]
    tokens = [""] * (max(vocab.values()) + 1)
    for text, index in vocab.items():
        tokens[index] = text
    types = [(3 if added[t]["special"] else 4) if t in added else 1 for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
    }


# ----- the file writer -----

# Python value -> GGUF metadata type, for the writer's choices.
U8, I8, U16, I16, U32, I32, FLOAT32, BOOL, STRING, ARRAY, U64, I64, FLOAT64 = range(13)
FORMATS = {
    U8: "<B",
    I8: "<b",
    U16: "<H",
    I16: "<h",
    U32: "<I",
    I32: "<i",
    FLOAT32: "<f",
    BOOL: "<?",
    U64: "<Q",
    I64: "<q",
    FLOAT64: "<d",
}


class Typed:
    """A metadata value with an explicit GGUF type (arrays: the element type)."""

    def __init__(self, kind: int, value: Any) -> None:
        self.kind, self.value = kind, value


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _guess(value: Any) -> int:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return U32 if value >= 0 else I32
    if isinstance(value, float):
        return FLOAT32
    if isinstance(value, str):
        return STRING
    return ARRAY


def _value(kind: int, value: Any) -> bytes:
    if kind == STRING:
        return _string(value)
    if kind in FORMATS:
        return struct.pack(FORMATS[kind], value)
    raise ValueError(kind)


def _kv(key: str, value: Any) -> bytes:
    out = _string(key)
    if isinstance(value, Typed) and isinstance(value.value, list):
        items = value.value
        out += struct.pack("<IIQ", ARRAY, value.kind, len(items))
        return out + b"".join(_value(value.kind, v) for v in items)
    if isinstance(value, Typed):
        return out + struct.pack("<I", value.kind) + _value(value.kind, value.value)
    kind = _guess(value)
    if kind != ARRAY:
        return out + struct.pack("<I", kind) + _value(kind, value)
    item = _guess(value[0]) if value else U32
    if item == ARRAY:  # nested arrays
        body = b"".join(_kv("", v)[12:] for v in value)
        return out + struct.pack("<IIQ", ARRAY, ARRAY, len(value)) + body
    out += struct.pack("<IIQ", ARRAY, item, len(value))
    return out + b"".join(_value(item, v) for v in value)


def write_gguf(
    path: str | Path,
    metadata: Mapping[str, Any],
    tensors: Sequence[tuple[str, Any, str]],
    alignment: int = ALIGNMENT,
) -> None:
    """Write a GGUF v3: metadata, then (name, float32 array, type name) tensors."""
    meta = dict(metadata)
    if alignment != ALIGNMENT:
        meta["general.alignment"] = Typed(U32, alignment)
    blobs, infos, offset = [], b"", 0
    for name, array, type_name in tensors:
        data = encode(array, type_name).tobytes()
        dims = list(reversed(np.asarray(array).shape))
        infos += _string(name) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", TYPE_IDS[type_name], offset)
        padded = data + b"\0" * (-len(data) % alignment)
        blobs.append(padded)
        offset += len(padded)
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta))
    header += b"".join(_kv(k, v) for k, v in meta.items()) + infos
    header += b"\0" * (-len(header) % alignment)
    with open(path, "wb") as f:
        f.write(header)
        for blob in blobs:
            f.write(blob)


def llama_gguf(  # noqa: PLR0917 - mirrors convert_hf_to_gguf's inputs
    path: str | Path,
    config: Any,
    weights: Mapping[str, Any],
    folder: Path,
    quant: str = "F32",
    arch: str = "llama",
) -> None:
    """A GGUF of a LlamaConfig-like model: linears in ``quant``, norms F32, embeddings Q8_0
    for quantised files (as llama.cpp's Q4 presets keep them wider), tokenizer from ``folder``."""
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tok_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    vocab = dict(tokenizer["model"]["vocab"])
    vocab |= {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    metadata: dict[str, Any] = {
        "general.architecture": arch,
        "general.name": "tiny-chat",
        f"{arch}.context_length": config.max_position_embeddings,
        f"{arch}.embedding_length": config.hidden_size,
        f"{arch}.block_count": config.num_layers,
        f"{arch}.feed_forward_length": config.intermediate_size,
        f"{arch}.rope.dimension_count": config.head_size,
        f"{arch}.attention.head_count": config.num_heads,
        f"{arch}.attention.head_count_kv": config.num_kv_heads,
        f"{arch}.attention.layer_norm_rms_epsilon": config.rms_eps,
        f"{arch}.rope.freq_base": config.rope_theta,
        f"{arch}.vocab_size": config.vocab_size,
        **tokenizer_metadata(tokenizer),
        "tokenizer.ggml.eos_token_id": vocab[tok_config["eos_token"]],
        "tokenizer.ggml.padding_token_id": vocab[tok_config["pad_token"]],
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": (folder / "chat_template.jinja").read_text(encoding="utf-8"),
    }
    wide = "F32" if quant in ("F32", "F16") else "Q8_0"
    tensors = []
    for name, weight in weights.items():
        value = np.asarray(weight, dtype=F32)
        if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.num_heads if "q_proj" in name else config.num_kv_heads
            value = permute(value, heads)
        if value.ndim == 1:
            kind = "F32"
        elif name in ("model.embed_tokens.weight", "lm_head.weight"):
            kind = quant if quant == "F16" else wide
        else:
            kind = quant
        tensors.append((gguf_name(name), value, kind))
    write_gguf(path, metadata, tensors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--type", default="F32", choices=["F32", "F16", *QUANTIZERS])
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tools"))
    import make_tiny_model

    from cortex.export.llama_onnx import LlamaConfig

    folder = ROOT / "models" / "tiny-chat"
    config = LlamaConfig.from_hf(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    weights = make_tiny_model.init_weights(config)
    llama_gguf(args.out, config, weights, folder, args.type)
    print(f"wrote {args.out} ({args.type})")


if __name__ == "__main__":
    main()
