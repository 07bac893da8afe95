"""The ggml dequantizers agree with reference quantizers and block packers, value for value."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cortex.export import ggml, nbits
from tests.export.gguftiny import WRITER

ROWS, COLS = 8, 512
# Worst |x - dequantize(quantize(x))| for values in [-1, 1]: half a step of the block's scale,
# plus the scale's own float16 rounding across the range.
STEP_BOUNDS = {
    "Q8_0": 1 / 127,
    "Q4_0": 1 / 8 + 1e-3,
    "Q4_1": 2 / 15,
    "Q5_0": 1 / 16 + 1e-3,
    "Q5_1": 2 / 31,
}


def sample(seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (ROWS, COLS)).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block
    x[1, :32] = 0.25  # a constant block
    return x


def reference_dequantize(raw: Any, name: str) -> Any:
    """Scalar transcription of ggml's dequantize_row_* for the block-32 formats."""
    size = ggml.TYPES[WRITER.TYPE_IDS[name]][2]
    out = []
    for block in np.asarray(raw).reshape(-1, size):
        d = float(block[:2].view(np.float16)[0])
        if name == "Q8_0":
            out += [d * float(v) for v in block[2:].view(np.int8)]
            continue
        m = float(block[2:4].view(np.float16)[0]) if name in ("Q4_1", "Q5_1") else None
        qh_at = {"Q5_0": 2, "Q5_1": 4}.get(name)
        qs = block[size - 16 :]
        qh = int(block[qh_at : qh_at + 4].view(np.uint32)[0]) if qh_at else 0
        values = [int(qs[j] & 15) for j in range(16)] + [int(qs[j] >> 4) for j in range(16)]
        if qh_at:
            values = [v | (((qh >> j) & 1) << 4) for j, v in enumerate(values)]
        offset = {"Q4_0": 8, "Q5_0": 16}.get(name, 0)
        out += [d * (v - offset) + (m or 0.0) for v in values]
    return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("name", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_block32_formats_dequantize_like_ggml(name: str) -> None:
    """Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 decode like ggml's loops and within half a step."""
    x = sample()
    raw = WRITER.encode(x, name)
    got = ggml.dequantize(raw, WRITER.TYPE_IDS[name], x.shape)
    assert np.allclose(got.ravel(), reference_dequantize(raw, name), atol=1e-6)
    assert np.abs(got - x).max() <= STEP_BOUNDS[name]


@pytest.mark.parametrize("name", ["F32", "F16", "BF16"])
def test_float_formats_decode_exactly(name: str) -> None:
    """F32 is exact; F16 and BF16 equal numpy's own rounding of the values."""
    x = sample(1)
    got = ggml.dequantize(WRITER.encode(x, name), WRITER.TYPE_IDS[name], x.shape)
    if name == "F16":
        x = x.astype(np.float16).astype(np.float32)
    if name == "BF16":
        x = (x.view(np.uint32) & 0xFFFF0000).view(np.float32)
    assert np.array_equal(got, x)


def k_parts(seed: int, q_max: int) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    blocks = 6
    d = rng.uniform(0.001, 0.1, blocks).astype(np.float16).astype(np.float32)
    dmin = rng.uniform(0.001, 0.1, blocks).astype(np.float16).astype(np.float32)
    scales, mins = rng.integers(0, 64, (blocks, 8)), rng.integers(0, 64, (blocks, 8))
    q = rng.integers(0, q_max + 1, (blocks, 8, 32))
    return d, dmin, scales, mins, q


@pytest.mark.parametrize("name", ["Q4_K", "Q5_K"])
def test_k_quants_with_mins_unpack_every_field(name: str) -> None:
    """Q4_K and Q5_K give d * scale * q - dmin * min for every sub-block's six-bit fields."""
    d, dmin, scales, mins, q = k_parts(2, 15 if name == "Q4_K" else 31)
    raw = (WRITER.pack_q4_k if name == "Q4_K" else WRITER.pack_q5_k)(d, dmin, scales, mins, q)
    expected = d[:, None, None] * scales[..., None] * q - (dmin[:, None] * mins)[..., None]
    got = ggml.dequantize(raw, WRITER.TYPE_IDS[name], (len(d), 256))
    assert np.allclose(got, expected.reshape(len(d), 256), rtol=1e-6, atol=1e-6)


def test_q6_k_unpacks_low_and_high_bits_and_signed_scales() -> None:
    """Q6_K gives d * scale[i // 16] * (q - 32) with int8 scales."""
    rng = np.random.default_rng(3)
    d = rng.uniform(0.001, 0.1, 5).astype(np.float16).astype(np.float32)
    scales, q = rng.integers(-128, 128, (5, 16)), rng.integers(0, 64, (5, 256))
    raw = WRITER.pack_q6_k(d, scales, q)
    expected = d[:, None] * np.repeat(scales, 16, axis=1) * (q - 32)
    got = ggml.dequantize(raw, ggml.Q6_K, (5, 256))
    assert np.allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["Q4_0", "Q4_1"])
def test_q4_blocks_map_to_matmulnbits_without_loss(name: str) -> None:
    """Q4_0 and Q4_1 become MatMulNBits weights that decode to the same floats (1e-6)."""
    x = sample(4)
    raw = WRITER.encode(x, name)
    weight = nbits.from_q4(*ggml.q4_parts(raw, WRITER.TYPE_IDS[name], ROWS))
    assert (weight.zero_points is None) == (name == "Q4_0")
    expected = ggml.dequantize(raw, WRITER.TYPE_IDS[name], x.shape)
    assert np.abs(weight.dequantize() - expected).max() <= 1e-6


def test_float_weights_requantize_to_int4_within_half_a_step() -> None:
    """quantize() rounds each block of 32 to 16 levels: error at most half a step."""
    x = sample(5)
    weight = nbits.quantize(x)
    steps = np.repeat(weight.scales, 32, axis=1)
    assert np.all(np.abs(weight.dequantize() - x) <= steps / 2 + 1e-6)
