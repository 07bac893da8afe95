"""Dequantize ggml tensor data (the block formats GGUF files store) to float32 numpy arrays.

Pure numpy, vectorised over blocks; each function mirrors ggml's ``dequantize_row_*`` in
ggml-quants.c. ``q4_parts`` exposes Q4_0/Q4_1 blocks unexpanded, for a lossless int4 export.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = 0, 1, 2, 3, 6, 7, 8
Q4_K, Q5_K, Q6_K, BF16 = 12, 13, 14, 30
QK_K = 256

# ggml type -> (name, elements per block, bytes per block)
TYPES: dict[int, tuple[str, int, int]] = {
    F32: ("F32", 1, 4),
    F16: ("F16", 1, 2),
    BF16: ("BF16", 1, 2),
    Q4_0: ("Q4_0", 32, 18),
    Q4_1: ("Q4_1", 32, 20),
    Q5_0: ("Q5_0", 32, 22),
    Q5_1: ("Q5_1", 32, 24),
    Q8_0: ("Q8_0", 32, 34),
    Q4_K: ("Q4_K", QK_K, 144),
    Q5_K: ("Q5_K", QK_K, 176),
    Q6_K: ("Q6_K", QK_K, 210),
}


def type_name(ggml_type: int) -> str:
    """The ggml name of a type number (``"type 23"`` if unknown here)."""
    return TYPES[ggml_type][0] if ggml_type in TYPES else f"type {ggml_type}"


def nbytes(ggml_type: int, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of ``shape`` (numpy order) occupies in ``ggml_type``."""
    name, block, size = _spec(ggml_type)
    count = 1
    for dim in shape:
        count *= dim
    if shape and shape[-1] % block:
        raise ValueError(f"a {name} row of {shape[-1]} is not a multiple of its block {block}")
    return count // block * size


def dequantize(raw: Any, ggml_type: int, shape: tuple[int, ...]) -> Any:
    """float32 array of ``shape`` from a tensor's raw uint8 bytes."""
    import numpy as np

    size = _spec(ggml_type)[2]
    data = np.asarray(raw, dtype=np.uint8)
    if ggml_type == F32:
        return data.view(np.float32).reshape(shape).copy()
    if ggml_type == F16:
        return data.view(np.float16).astype(np.float32).reshape(shape)
    if ggml_type == BF16:
        return (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    blocks = data.reshape(-1, size)
    return DEQUANT[ggml_type](blocks).astype(np.float32).reshape(shape)


def q4_parts(raw: Any, ggml_type: int, rows: int) -> tuple[Any, Any, Any]:
    """Q4_0/Q4_1 as (q uint8 [rows, blocks, 32] in 0..15, scale, min) with
    ``w = q * scale + min``; scale and min are float32 [rows, blocks]."""
    import numpy as np

    blocks = np.asarray(raw, dtype=np.uint8).reshape(-1, TYPES[ggml_type][2])
    d = _f16(blocks, 0)
    if ggml_type == Q4_0:
        q, m = _nibbles(blocks[:, 2:18]), -8.0 * d
    elif ggml_type == Q4_1:
        q, m = _nibbles(blocks[:, 4:20]), _f16(blocks, 2)
    else:
        raise ValueError(f"{type_name(ggml_type)} is not a 4-bit block-32 format")
    return q.reshape(rows, -1, 32), d.reshape(rows, -1), m.reshape(rows, -1)


def _spec(ggml_type: int) -> tuple[str, int, int]:
    if ggml_type not in TYPES:
        raise ValueError(f"ggml type {ggml_type} is not supported (known: {_known()})")
    return TYPES[ggml_type]


def _known() -> str:
    return ", ".join(name for name, _, _ in TYPES.values())


def _f16(blocks: Any, at: int) -> Any:
    """float32 column [blocks, 1] from the f16 at byte ``at`` of every block."""
    import numpy as np

    return blocks[:, at : at + 2].copy().view(np.float16).astype(np.float32)


def _nibbles(qs: Any) -> Any:
    """16 bytes per block -> 32 values: low nibbles are elements 0..15, high ones 16..31."""
    import numpy as np

    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _high_bits(qh: Any) -> Any:
    """A little-endian u32 per block -> its 32 bits as [blocks, 32] of 0/1."""
    import numpy as np

    bits = np.unpackbits(qh, axis=-1, bitorder="little")
    return bits.astype(np.uint8)


def _q4_0(b: Any) -> Any:
    return (_nibbles(b[:, 2:18]).astype("f4") - 8.0) * _f16(b, 0)


def _q4_1(b: Any) -> Any:
    return _nibbles(b[:, 4:20]).astype("f4") * _f16(b, 0) + _f16(b, 2)


def _q5_0(b: Any) -> Any:
    q = _nibbles(b[:, 6:22]) | (_high_bits(b[:, 2:6]) << 4)
    return (q.astype("f4") - 16.0) * _f16(b, 0)


def _q5_1(b: Any) -> Any:
    q = _nibbles(b[:, 8:24]) | (_high_bits(b[:, 4:8]) << 4)
    return q.astype("f4") * _f16(b, 0) + _f16(b, 2)


def _q8_0(b: Any) -> Any:
    return b[:, 2:34].view("i1").astype("f4") * _f16(b, 0)


def _k_scales(s: Any) -> tuple[Any, Any]:
    """The 8 six-bit scales and mins packed in 12 bytes (ggml's ``get_scale_min_k4``)."""
    import numpy as np

    lo, mid, hi = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    scales = np.concatenate([lo & 63, (hi & 0x0F) | ((lo >> 6) << 4)], axis=-1)
    mins = np.concatenate([mid & 63, (hi >> 4) | ((mid >> 6) << 4)], axis=-1)
    return scales.astype("f4"), mins.astype("f4")


def _q4_k(b: Any) -> Any:
    import numpy as np

    d, dmin = _f16(b, 0), _f16(b, 2)
    scales, mins = _k_scales(b[:, 4:16])
    qs = b[:, 16:144].reshape(-1, 4, 32)  # 4 chunks of 64 values: low nibbles, then high
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32).astype("f4")
    out = q * (d * scales)[:, :, None] - (dmin * mins)[:, :, None]
    return out.reshape(-1, QK_K)


def _q5_k(b: Any) -> Any:
    import numpy as np

    d, dmin = _f16(b, 0), _f16(b, 2)
    scales, mins = _k_scales(b[:, 4:16])
    qh = b[:, 16:48]  # bit 2j / 2j+1 of qh[l]: high bit of value l in sub-block 2j / 2j+1
    qs = b[:, 48:176].reshape(-1, 4, 32)
    low = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32)
    high = np.stack([(qh >> j) & 1 for j in range(8)], axis=1)
    q = (low | (high << 4)).astype("f4")
    out = q * (d * scales)[:, :, None] - (dmin * mins)[:, :, None]
    return out.reshape(-1, QK_K)


def _q6_k(b: Any) -> Any:
    import numpy as np

    ql = b[:, 0:128].reshape(-1, 2, 64)  # two halves of 128 values
    qh = b[:, 128:192].reshape(-1, 2, 32)
    sc = b[:, 192:208].view("i1").astype("f4").reshape(-1, 2, 8)
    d = _f16(b, 208)
    lo, hi = ql[:, :, :32], ql[:, :, 32:]
    parts = [
        (lo & 0x0F) | ((qh & 3) << 4),
        (hi & 0x0F) | (((qh >> 2) & 3) << 4),
        (lo >> 4) | (((qh >> 4) & 3) << 4),
        (hi >> 4) | (((qh >> 6) & 3) << 4),
    ]
    q = np.stack(parts, axis=2).astype("f4") - 32.0  # [blocks, half, 4, 32]
    q = q.reshape(-1, 2, 4, 2, 16)  # each 32 splits into two 16-value scale groups
    scale = sc.reshape(-1, 2, 4, 2)  # [half, part, group] = sc[half, 2 * part + group]
    out = q * scale[..., None] * d[:, :, None, None, None]
    return out.reshape(-1, QK_K)


DEQUANT: dict[int, Callable[[Any], Any]] = {
    Q4_0: _q4_0,
    Q4_1: _q4_1,
    Q5_0: _q5_0,
    Q5_1: _q5_1,
    Q8_0: _q8_0,
    Q4_K: _q4_k,
    Q5_K: _q5_k,
    Q6_K: _q6_k,
}
