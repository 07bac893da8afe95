"""Parse Hermes/Qwen-style tool calls out of model text, whole or streamed. Pure.

A call is ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``. Text outside the markers
is content; a marker whose body is not a valid call stays in the content verbatim, so nothing
the model wrote is lost. While streaming, text that may be the start of ``<tool_call>`` is held
back until it is decided.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from cortex.harness import TextDelta, ToolCall
from cortex_onnx.tags import TagSplitter

OPEN, CLOSE = "<tool_call>", "</tool_call>"
NewId = Callable[[], str]


def new_call_id() -> str:
    """An OpenAI-looking tool-call id."""
    return "call_" + uuid.uuid4().hex[:24]


def parse_tool_call(body: str, new_id: NewId = new_call_id) -> ToolCall | None:
    """The call in one marker's body, or ``None`` when it is not a valid call."""
    try:
        value: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    text = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(id=new_id(), name=value["name"], arguments=text)


class ToolCallStream:
    """Feed content text; get ``TextDelta`` and ``ToolCall`` events in order."""

    def __init__(self, new_id: NewId = new_call_id) -> None:
        self._new_id = new_id
        self._splitter = TagSplitter(OPEN, CLOSE)
        self._body: list[str] = []
        self.calls = 0

    def feed(self, text: str) -> list[TextDelta | ToolCall]:
        """Take the next chunk of content."""
        return self._events(self._splitter.feed(text), final=False)

    def finish(self) -> list[TextDelta | ToolCall]:
        """End of output: release held text; an unclosed call is parsed if it is complete."""
        return self._events(self._splitter.flush(), final=True)

    def _events(self, segments: list[tuple[str, str]], final: bool) -> list[TextDelta | ToolCall]:
        events: list[TextDelta | ToolCall] = []
        for kind, text in segments:
            if kind == "out":
                events.append(TextDelta(text))
            elif kind == "in":
                self._body.append(text)
            elif kind == "close":
                events.append(self._close(closed=True))
        if final and self._splitter.inside:
            events.append(self._close(closed=False))
        return _merge(events)

    def _close(self, closed: bool) -> TextDelta | ToolCall:
        body, self._body = "".join(self._body), []
        call = parse_tool_call(body, self._new_id)
        if call is None:
            return TextDelta(OPEN + body + (CLOSE if closed else ""))
        self.calls += 1
        return call


def parse_tool_calls(text: str, new_id: NewId = new_call_id) -> tuple[str, list[ToolCall]]:
    """Whole-text form: the content left over and the calls found, in order."""
    stream = ToolCallStream(new_id)
    events = stream.feed(text) + stream.finish()
    content = "".join(e.text for e in events if isinstance(e, TextDelta))
    return content, [e for e in events if isinstance(e, ToolCall)]


def _merge(events: list[TextDelta | ToolCall]) -> list[TextDelta | ToolCall]:
    """Join adjacent text events and drop empty ones."""
    merged: list[TextDelta | ToolCall] = []
    for event in events:
        if isinstance(event, TextDelta):
            if not event.text:
                continue
            if merged and isinstance(merged[-1], TextDelta):
                merged[-1] = TextDelta(merged[-1].text + event.text)
                continue
        merged.append(event)
    return merged
