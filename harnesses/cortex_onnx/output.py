"""Turn generated token ids into events: detokenise, cut at stop strings, drop ``<think>``
reasoning, split out tool calls. Pure, given the tokenizer's decode function.
"""

from __future__ import annotations

from collections.abc import Sequence

from cortex.harness import TextDelta, ToolCall
from cortex_onnx.detok import Decode, IncrementalDecoder
from cortex_onnx.stops import StopMatcher
from cortex_onnx.tags import TagSplitter
from cortex_onnx.toolcalls import NewId, ToolCallStream, new_call_id

Event = TextDelta | ToolCall


class OutputPipeline:
    """One generation's output side; ``stopped`` is set once a stop string matched."""

    def __init__(self, decode: Decode, stops: Sequence[str], new_id: NewId = new_call_id) -> None:
        self._detok = IncrementalDecoder(decode)
        self._stops = StopMatcher(stops)
        self._think = TagSplitter("<think>", "</think>")
        self._tools = ToolCallStream(new_id)

    @property
    def stopped(self) -> str | None:
        """The stop string that ended the text, if one has."""
        return self._stops.matched

    @property
    def tool_calls(self) -> int:
        """How many tool calls have been emitted."""
        return self._tools.calls

    def push(self, token_id: int) -> list[Event]:
        """One generated id in; the events it completes out."""
        text = self._detok.push(token_id)
        return self._content(self._stops.feed(text)) if text else []

    def finish(self) -> list[Event]:
        """End of generation: release everything still held back."""
        text = ""
        if self._stops.matched is None:
            text = self._stops.feed(self._detok.flush())
            text += self._stops.flush()
        events = self._content(text)
        kept = "".join(t for kind, t in self._think.flush() if kind == "out")
        return events + self._tools.feed(kept) + self._tools.finish()

    def _content(self, text: str) -> list[Event]:
        if not text:
            return []
        kept = "".join(t for kind, t in self._think.feed(text) if kind == "out")
        return self._tools.feed(kept) if kept else []
