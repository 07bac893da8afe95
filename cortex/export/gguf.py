"""Read a GGUF file: header, typed key-value metadata, tensor infos and each tensor's raw bytes.

I/O: memory-maps the file read-only; tensors are numpy views into the map, so reading metadata
of a multi-gigabyte file costs nothing. Dequantization lives in ``cortex.export.ggml``.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (versions 2 and 3).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Mapping
from typing import Any

import attrs

from cortex.export import ExportError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# Metadata value types: struct format of the scalar ones.
SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
STRING, ARRAY = 8, 9


class GGUFError(ExportError):
    """The file is not a GGUF this reader understands."""


@attrs.frozen
class TensorInfo:
    """One tensor's name, numpy-order shape (slowest dim first), ggml type and data offset."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # absolute, in the file


class GGUFFile:
    """A parsed GGUF: ``metadata`` (key -> value) and ``tensors`` (name -> TensorInfo)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._pos = 0
        if self._read(4) != MAGIC:
            raise GGUFError(f"{path} is not a GGUF file (no GGUF magic)")
        self.version = self._scalar("<I")
        if self.version not in (2, 3):
            raise GGUFError(f"{path} is GGUF version {self.version}; this reader knows 2 and 3")
        n_tensors, n_kv = self._scalar("<Q"), self._scalar("<Q")
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self._string()
            self.metadata[key] = self._value(self._scalar("<I"))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = [self._scalar("<Q") for _ in range(self._scalar("<I"))]
            infos.append((name, tuple(reversed(dims)), self._scalar("<I"), self._scalar("<Q")))
        alignment = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        self.data_offset = -(-self._pos // alignment) * alignment
        self.tensors: dict[str, TensorInfo] = {
            name: TensorInfo(name, shape, kind, self.data_offset + offset)
            for name, shape, kind, offset in infos
        }

    def close(self) -> None:
        """Release the memory map (arrays from ``raw`` must not be used afterwards)."""
        self._map.close()

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def architecture(self) -> str:
        """``general.architecture``: llama, qwen2, ..."""
        return str(self.metadata.get("general.architecture", "llama"))

    def arch_key(self, key: str, default: Any = None) -> Any:
        """The metadata value ``<architecture>.<key>``."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def raw(self, info: TensorInfo, nbytes: int) -> Any:
        """The tensor's ``nbytes`` bytes as a read-only uint8 numpy view into the file."""
        import numpy as np

        if info.offset + nbytes > len(self._map):
            raise GGUFError(f"tensor {info.name} runs past the end of {self.path}")
        return np.frombuffer(self._map, dtype=np.uint8, count=nbytes, offset=info.offset)

    def _read(self, n: int) -> bytes:
        data = self._map[self._pos : self._pos + n]
        if len(data) != n:
            raise GGUFError(f"{self.path} ends inside its header")
        self._pos += n
        return data

    def _scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self._pos + size > len(self._map):
            raise GGUFError(f"{self.path} ends inside its header")
        (value,) = struct.unpack_from(fmt, self._map, self._pos)
        self._pos += size
        return value

    def _string(self) -> str:
        return self._read(self._scalar("<Q")).decode("utf-8", errors="replace")

    def _value(self, kind: int) -> Any:
        if kind in SCALARS:
            return self._scalar(SCALARS[kind])
        if kind == STRING:
            return self._string()
        if kind == ARRAY:
            item, count = self._scalar("<I"), self._scalar("<Q")
            if item in SCALARS:  # one unpack for the whole array (token types, scores)
                fmt = SCALARS[item]
                values = struct.unpack_from(f"<{count}{fmt[1]}", self._map, self._pos)
                self._pos += struct.calcsize(fmt) * count
                return list(values)
            return [self._value(item) for _ in range(count)]
        raise GGUFError(f"{self.path} has a metadata value of unknown type {kind}")


def summary(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata with long arrays shortened, for printing."""
    return {
        k: (f"[{len(v)} items]" if isinstance(v, list) and len(v) > 8 else v)
        for k, v in metadata.items()
    }
