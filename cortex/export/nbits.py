"""Linear weights as com.microsoft ``MatMulNBits`` inputs: 4-bit, blocks of 32 along K.

Pure numpy. ``Int4Weight`` holds one HF-layout [N, K] weight packed the way the operator reads
it: ``w[n, k] = (q[n, k] - zero_point[n, k // 32]) * scale[n, k // 32]``, two values per byte
(even k in the low nibble). A missing zero point means 8 (symmetric). ``from_q4`` maps GGUF's
Q4_0/Q4_1 blocks losslessly; ``quantize`` rounds float weights (asymmetric, per block). The
exporter maps only Q4_0 directly: Q4_1's float zero points hit onnxruntime's slow CPU path
(~6x slower than integer zero points), so Q4_1 is dequantized and re-quantized.
"""

from __future__ import annotations

from typing import Any

import attrs

BLOCK = 32


@attrs.frozen(eq=False)
class Int4Weight:
    """One [N, K] linear weight in MatMulNBits form."""

    packed: Any  # uint8 [N, K / 32, 16]
    scales: Any  # float32 [N, K / 32]
    zero_points: Any | None  # float32 [N, K / 32]; None: 8

    @property
    def shape(self) -> tuple[int, int]:
        """The HF [out, in] shape of the weight it stands for."""
        n, blocks, _ = self.packed.shape
        return int(n), int(blocks * BLOCK)

    def packed_zero_points(self) -> Any:
        """The zero points as MatMulNBits reads them: uint8, two per byte when they are the
        integers 0..15 (the fast kernels), else float32 like the scales."""
        import numpy as np

        zero = np.asarray(self.zero_points, dtype=np.float32)
        if not np.array_equal(zero, np.clip(np.round(zero), 0, 15)):
            return zero.astype(np.float32).ravel()
        q = zero.astype(np.uint8)
        if q.shape[1] % 2:
            q = np.concatenate([q, np.zeros((q.shape[0], 1), np.uint8)], axis=1)
        return np.ascontiguousarray(q[:, 0::2] | (q[:, 1::2] << 4)).ravel()

    def take_rows(self, order: Any) -> Int4Weight:
        """The weight with its output rows reordered (rows are independent blocks)."""
        zero = None if self.zero_points is None else self.zero_points[order]
        return Int4Weight(self.packed[order], self.scales[order], zero)

    def dequantize(self) -> Any:
        """The float32 [N, K] weight it encodes."""
        import numpy as np

        q = np.stack([self.packed & 0x0F, self.packed >> 4], axis=-1).reshape(
            *self.scales.shape, -1
        )
        zero = 8.0 if self.zero_points is None else self.zero_points[..., None]
        w = (q.astype(np.float32) - zero) * self.scales[..., None]
        return w.reshape(self.shape)


def pack(q: Any) -> Any:
    """uint8 values 0..15 [N, blocks, 32] -> bytes [N, blocks, 16], even index in the low nibble."""
    import numpy as np

    q = np.asarray(q, dtype=np.uint8)
    return np.ascontiguousarray(q[..., 0::2] | (q[..., 1::2] << 4))


def from_q4(q: Any, scale: Any, minimum: Any) -> Int4Weight:
    """From ``w = q * scale + minimum`` blocks (``ggml.q4_parts``); exact for Q4_0 and Q4_1."""
    import numpy as np

    scale = np.asarray(scale, dtype=np.float32)
    minimum = np.asarray(minimum, dtype=np.float32)
    if np.array_equal(minimum, -8.0 * scale):  # Q4_0: the operator's default zero point
        return Int4Weight(pack(q), scale, None)
    flat = scale == 0  # a constant block: q must be 0 and the zero point carries the value
    q = np.where(flat[..., None], 0, q)
    safe = np.where(flat, 1.0, scale)
    zero = np.where(flat, -minimum, -minimum / safe).astype(np.float32)
    return Int4Weight(pack(q), safe.astype(np.float32), zero)


def quantize(w: Any) -> Int4Weight:
    """Round a float [N, K] weight to 4 bits per value, min/max per block of 32."""
    import numpy as np

    w = np.asarray(w, dtype=np.float32)
    n, k = w.shape
    if k % BLOCK:
        raise ValueError(f"int4 needs the input width {k} to be a multiple of {BLOCK}")
    blocks = w.reshape(n, k // BLOCK, BLOCK)
    lo = np.minimum(blocks.min(axis=-1), 0.0)
    hi = np.maximum(blocks.max(axis=-1), 0.0)
    scale = (hi - lo) / 15.0
    safe = np.where(scale == 0, 1.0, scale).astype(np.float32)
    zero = np.clip(np.round(-lo / safe), 0, 15).astype(np.float32)
    q = np.clip(np.round(blocks / safe[..., None] + zero[..., None]), 0, 15)
    return Int4Weight(pack(q), safe, zero)
