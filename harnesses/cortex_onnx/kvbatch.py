"""Hold the KV caches of the sequences that decode together, and run their shared steps.

``PaddedBatch`` (optimum layout) keeps one left-padded tensor per KV port, [rows, kv_heads,
width, head_size]; row ``i`` fills the last ``lengths[i]`` columns and its mask and position ids
come from that length (``position = cumsum(mask) - 1``), so a row decodes as it would alone. Rows
join and leave only between steps; either regroups the tensors on the host once (the steps in
between only grow them by a column, on the device). ``SerialBatch`` serves graphs whose KV is one
preallocated buffer per sequence (genai layout): each row keeps its own cache and steps alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from cortex_onnx.engine import Generation
from cortex_onnx.session import Decoder, KVCache

Arrays = tuple[npt.NDArray[Any], ...]


class Row:
    """One sequence in a batch: its generation, the ids its KV holds and the token to feed."""

    def __init__(self, generation: Generation, ids: Sequence[int], token: int) -> None:
        self.generation = generation
        self.ids = list(ids)
        self.token = token
        self.cache: KVCache | None = None  # SerialBatch only

    @property
    def length(self) -> int:
        """Tokens in this row's KV."""
        return len(self.ids)


class PaddedBatch:
    """Rows decoding in one left-padded batch (graphs with growing past/present KV)."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.rows: list[Row] = []
        self.width = 0
        self.past: dict[str, Any] = {}
        self.run_seconds = 0.0

    def regroup(
        self, leave: Sequence[Row], join: Sequence[tuple[Row, KVCache]], export: bool
    ) -> list[Arrays]:
        """Drop ``leave``, append ``join`` (each with its batch-1 cache); return the KV of the
        rows that left (host copies) when ``export`` is set."""
        from onnxruntime import OrtValue

        if not leave and not join:
            return []
        dec, lay = self.decoder, self.decoder.layout
        old = {name: value.numpy() for name, value in self.past.items()} if self.rows else {}
        gone = {id(r) for r in leave}
        keep = [(i, r) for i, r in enumerate(self.rows) if id(r) not in gone]
        exported: list[Arrays] = []
        if export:
            for row in leave:
                i, n = self.rows.index(row), row.length
                cut = slice(self.width - n, self.width)
                exported.append(tuple(old[p][i : i + 1, :, cut, :].copy() for p in lay.past))
        rows = [r for _, r in keep] + [r for r, _ in join]
        width = max((r.length for r in rows), default=0)
        past: dict[str, Any] = {}
        for name in lay.past:
            shape = (len(rows), lay.kv_heads, width, lay.head_size)
            array = np.zeros(shape, dtype=lay.kv_dtype)
            for j, (i, row) in enumerate(keep):
                n = row.length
                array[j, :, width - n :, :] = old[name][i, :, self.width - n : self.width, :]
            for j, (row, cache) in enumerate(join, start=len(keep)):
                n = row.length
                array[j, :, width - n :, :] = cache.past[name].numpy()[0, :, :n, :]
            if rows:
                past[name] = OrtValue.ortvalue_from_numpy(array, dec.device, dec.device_id)
        self.rows, self.width, self.past = rows, width, past
        return exported

    def step(self) -> list[npt.NDArray[np.float32]]:
        """Feed every row its token; return each row's next logits."""
        import time

        began = time.perf_counter()
        tokens = [r.token for r in self.rows]
        lengths = [r.length for r in self.rows]
        logits, self.past = self.decoder.step(self.past, tokens, lengths, self.width)
        self.width += 1
        for row in self.rows:
            row.ids.append(row.token)
        self.run_seconds += time.perf_counter() - began
        return list(logits)


class SerialBatch:
    """Rows that each keep their own preallocated cache and step one after another."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.rows: list[Row] = []
        self.run_seconds = 0.0

    def regroup(
        self, leave: Sequence[Row], join: Sequence[tuple[Row, KVCache]], export: bool
    ) -> list[Arrays]:
        """Drop ``leave`` and append ``join``; return the KV of the rows that left if asked."""
        exported = []
        for row in leave:
            if export and row.cache is not None:
                exported.append(self.decoder.export(row.cache))
            row.cache = None
        gone = {id(r) for r in leave}
        self.rows = [r for r in self.rows if id(r) not in gone]
        for row, cache in join:
            row.cache = cache
            self.rows.append(row)
        return exported

    def step(self) -> list[npt.NDArray[np.float32]]:
        """Feed every row its token, one forward each; return each row's next logits."""
        out = []
        for row in self.rows:
            assert row.cache is not None
            before = row.cache.run_seconds
            out.append(self.decoder.forward(row.cache, [row.token])[-1])
            self.run_seconds += row.cache.run_seconds - before
            row.ids.append(row.token)
        return out


Batch = PaddedBatch | SerialBatch


def new_batch(decoder: Decoder) -> Batch:
    """The batch kind the decoder's graph supports."""
    return SerialBatch(decoder) if decoder.layout.shared_buffer else PaddedBatch(decoder)
