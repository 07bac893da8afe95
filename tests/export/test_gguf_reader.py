"""The GGUF reader parses headers, every metadata type, tensor infos and aligned data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cortex.export import ggml
from cortex.export.gguf import GGUFError, GGUFFile
from tests.export.gguftiny import WRITER


def test_metadata_of_every_type_reads_back(tmp_path: Path) -> None:
    """Scalars of all widths, strings, bools, arrays and nested arrays keep value and type."""
    t = WRITER.Typed
    metadata = {
        "u8": t(WRITER.U8, 250),
        "i8": t(WRITER.I8, -5),
        "u16": t(WRITER.U16, 65000),
        "i16": t(WRITER.I16, -3000),
        "u32": 4_000_000_000,
        "i32": -7,
        "f32": 0.5,
        "bool": True,
        "str": "héllo ✓",
        "u64": t(WRITER.U64, 2**40),
        "i64": t(WRITER.I64, -(2**40)),
        "f64": t(WRITER.FLOAT64, 1e-300),
        "strings": ["a", "b c", ""],
        "ints": t(WRITER.I32, [1, -2, 3]),
        "nested": [[1, 2], [3]],
    }
    path = tmp_path / "m.gguf"
    WRITER.write_gguf(path, metadata, [])
    with GGUFFile(str(path)) as gguf:
        got = gguf.metadata
    expected = {k: (v.value if isinstance(v, WRITER.Typed) else v) for k, v in metadata.items()}
    assert got == expected


@pytest.mark.parametrize("alignment", [32, 64])
def test_tensors_are_found_at_their_aligned_offsets(tmp_path: Path, alignment: int) -> None:
    """Tensor data starts at the aligned end of the header; shapes come back slowest-first."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal((7,)).astype(np.float32)
    path = tmp_path / "t.gguf"
    WRITER.write_gguf(path, {"x": 1}, [("a", a, "F32"), ("b", b, "F16")], alignment=alignment)
    with GGUFFile(str(path)) as gguf:
        assert gguf.data_offset % alignment == 0
        info_a, info_b = gguf.tensors["a"], gguf.tensors["b"]
        assert (info_a.shape, info_b.shape) == ((3, 5), (7,))
        got_a = ggml.dequantize(gguf.raw(info_a, 60), info_a.ggml_type, info_a.shape)
        got_b = ggml.dequantize(gguf.raw(info_b, 14), info_b.ggml_type, info_b.shape)
    assert np.array_equal(got_a, a)
    assert np.array_equal(got_b, b.astype(np.float16).astype(np.float32))


def test_a_file_without_the_magic_is_refused(tmp_path: Path) -> None:
    """A non-GGUF file gives a GGUFError that says so."""
    path = tmp_path / "x.gguf"
    path.write_bytes(b"NOPE" + bytes(64))
    with pytest.raises(GGUFError, match="not a GGUF"):
        GGUFFile(str(path))


def test_a_truncated_header_is_refused(tmp_path: Path) -> None:
    """A header cut short gives a GGUFError, not a struct error."""
    path = tmp_path / "t.gguf"
    WRITER.write_gguf(path, {"key": "value" * 20}, [])
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(GGUFError, match="ends inside its header"):
        GGUFFile(str(path))
