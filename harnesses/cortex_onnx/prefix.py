"""Keep the KV caches of recent token-id prefixes, LRU within a byte budget. Pure numpy.

Agents resend the whole conversation every turn, so the KV of what a model last processed
(prompt plus the tokens it generated) is usually a prefix of the next request. The KV of a
position depends only on the tokens up to it, so any common prefix of a stored sequence and a new
prompt is reusable, even where the two diverge later.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Arrays = tuple[npt.NDArray[np.floating], ...]  # per KV port, [1, kv_heads, tokens, head_size]


class PrefixCache:
    """LRU map from token-id sequences to their KV arrays; ``nbytes`` never exceeds ``limit``."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = max(0, int(limit_bytes))
        self.nbytes = 0
        self._entries: OrderedDict[tuple[int, ...], tuple[npt.NDArray[np.int64], Arrays]] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def sequences(self) -> list[tuple[int, ...]]:
        """Stored sequences, least recently used first."""
        return list(self._entries)

    def lookup(self, ids: Sequence[int]) -> tuple[int, Arrays]:
        """The longest stored prefix of ``ids`` that leaves at least one token to run, and views
        of its KV (``(0, ())`` when nothing matches)."""
        want = np.asarray(ids, dtype=np.int64)
        best, best_key = 0, None
        for key, (stored, _) in self._entries.items():
            n = min(len(stored), len(want) - 1)
            if n <= best:
                continue
            same = stored[:n] == want[:n]
            common = n if same.all() else int(np.argmin(same))
            if common > best:
                best, best_key = common, key
        if best_key is None:
            return 0, ()
        self._entries.move_to_end(best_key)
        arrays = self._entries[best_key][1]
        return best, tuple(a[:, :, :best, :] for a in arrays)

    def insert(self, ids: Sequence[int], arrays: Arrays) -> bool:
        """Store the KV of ``ids`` (arrays are kept, not copied); evict least recently used
        entries to stay within the budget. False when it was not stored (too big, or covered by
        an entry it is a prefix of, which is refreshed instead)."""
        key = tuple(ids)
        size = sum(a.nbytes for a in arrays)
        if not key or size > self.limit:
            return False
        for other in list(self._entries):
            if other[: len(key)] == key:
                self._entries.move_to_end(other)
                return False
            if key[: len(other)] == other:
                self._drop(other)  # superseded by the longer sequence
        self._entries[key] = (np.asarray(key, dtype=np.int64), arrays)
        self.nbytes += size
        while self.nbytes > self.limit:
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, key: tuple[int, ...]) -> None:
        _, arrays = self._entries.pop(key)
        self.nbytes -= sum(a.nbytes for a in arrays)
