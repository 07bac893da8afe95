"""Split streamed text at an open/close tag pair, holding back possible partial tags. Pure.

``feed`` returns segments ``(kind, text)`` with kind ``"out"`` (outside the tags), ``"open"``,
``"in"`` (between the tags) or ``"close"``. Joining them with the tags put back gives the input.
"""

from __future__ import annotations

Segment = tuple[str, str]


class TagSplitter:
    """One ``<open>...</close>`` pair, e.g. ``<tool_call>`` or ``<think>``."""

    def __init__(self, open_tag: str, close_tag: str) -> None:
        self.open_tag, self.close_tag = open_tag, close_tag
        self.inside = False
        self._held = ""

    def feed(self, text: str) -> list[Segment]:
        """Take the next chunk; return the segments that are decided."""
        buffer = self._held + text
        segments: list[Segment] = []
        while True:
            tag = self.close_tag if self.inside else self.open_tag
            kind = "in" if self.inside else "out"
            at = buffer.find(tag)
            if at < 0:
                break
            if at:
                segments.append((kind, buffer[:at]))
            segments.append(("close" if self.inside else "open", ""))
            self.inside = not self.inside
            buffer = buffer[at + len(tag) :]
        keep = _partial(buffer, tag)
        self._held = buffer[len(buffer) - keep :]
        if len(buffer) > keep:
            segments.append((kind, buffer[: len(buffer) - keep]))
        return segments

    def flush(self) -> list[Segment]:
        """At the end of the stream: the held text, which was not a tag after all."""
        held, self._held = self._held, ""
        return [("in" if self.inside else "out", held)] if held else []


def _partial(buffer: str, tag: str) -> int:
    """Length of the longest suffix of ``buffer`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(buffer)), 0, -1):
        if tag.startswith(buffer[-size:]):
            return size
    return 0
