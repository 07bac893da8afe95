"""Match stop strings across chunk boundaries and hold back text that may start one. Pure.

The stop that wins is the one whose end comes first in the text (ties: the longest), so the
outcome does not depend on how the text was split into chunks.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Streams text through, cutting it at the first stop string."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.matched: str | None = None
        self._held = ""

    def feed(self, text: str) -> str:
        """Take the next chunk; return the text that is safe to emit now."""
        if self.matched is not None:
            return ""
        buffer = self._held + text
        best: tuple[int, int, str] | None = None
        for stop in self.stops:
            start = buffer.find(stop)
            if start >= 0:
                key = (start + len(stop), -len(stop), stop)
                if best is None or key < best:
                    best = key
        if best is not None:
            end, negative_len, stop = best
            self.matched, self._held = stop, ""
            return buffer[: end + negative_len]
        keep = self._partial(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """At the end of the stream: the held text, which turned out not to be a stop."""
        held, self._held = self._held, ""
        return held

    def _partial(self, buffer: str) -> int:
        """Length of the longest suffix of ``buffer`` that is a proper prefix of a stop."""
        longest = max((len(s) for s in self.stops), default=1) - 1
        for size in range(min(longest, len(buffer)), 0, -1):
            tail = buffer[-size:]
            if any(stop.startswith(tail) for stop in self.stops):
                return size
        return 0
