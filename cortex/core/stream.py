"""OpenAI chat chunks -> Anthropic stream events, one state machine per stream. Pure.

The shell parses the neuron's SSE with ``sse.SSEParser``, json-decodes each ``data`` and
calls ``feed``; at ``[DONE]`` (or a clean upstream end) ``finish``; on a failure ``fail``;
while waiting ``ping``. Each returned ``(event, data)`` is written with ``sse.encode_event``.

Rules (SPEC 3.5, NOTES "What real clients require"): ``message_start`` comes first, carrying
``usage.input_tokens`` from the first chunk's usage when it has one; content blocks run one at
a time with indices 0, 1, 2…: text deltas fill a text block, each OpenAI tool-call index gets its
own ``tool_use`` block (id from the neuron, else ``toolu_<message id>_<index>``); every block
started is stopped exactly once; ``message_delta`` (with non-null usage) and ``message_stop`` end
it. After ``fail`` nothing more is emitted (no ``message_stop`` after an ``error``).

Decisions: ``reasoning_content`` is ignored; empty text deltas open no block; a tool call whose
block was already closed (interleaved parallel calls, which OpenAI-style servers do not send)
fails the stream rather than losing arguments; without upstream usage, ``output_tokens`` counts
the content-bearing chunks (one per decoded increment on a neuron).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cortex.core.translate_response import stop_reason, tool_use_id, usage

Event = tuple[str, dict[str, Any]]

ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "timeout_error",
    }
)
_PING: Event = ("ping", {"type": "ping"})
_STOP: Event = ("message_stop", {"type": "message_stop"})


def error_event(message: str, error_type: str = "api_error") -> Event:
    """The Anthropic mid-stream ``error`` event (unknown types become ``api_error``)."""
    kind = error_type if error_type in ERROR_TYPES else "api_error"
    return "error", {"type": "error", "error": {"type": kind, "message": message}}


class AnthropicStreamTranslator:
    """Turns one stream of OpenAI chunks into the Anthropic events for it."""

    __slots__ = (
        "_block",
        "_chunks",
        "_closed_tools",
        "_done",
        "_finish",
        "_matched",
        "_message_id",
        "_model",
        "_next",
        "_open",
        "_started",
        "_stop_sequences",
        "_tools",
        "_usage",
    )

    def __init__(self, *, model: str, message_id: str, stop_sequences: Sequence[str] = ()) -> None:
        self._model = model
        self._message_id = message_id
        self._stop_sequences = tuple(stop_sequences)
        self._started = False
        self._done = False  # finished or failed: nothing more is emitted
        self._next = 0  # the next block index
        self._open: Any = None  # "text", an OpenAI tool index, or None
        self._block = -1  # the open block's Anthropic index
        self._tools: dict[Any, int] = {}  # OpenAI tool index -> Anthropic block index
        self._closed_tools: set[Any] = set()
        self._finish: Any = None
        self._matched: Any = None
        self._usage: Any = None
        self._chunks = 0

    def _start(self, out: list[Event], first_usage: Any) -> None:
        self._started = True
        start_usage = usage(first_usage)
        start_usage["output_tokens"] = 0
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        out.append(("message_start", {"type": "message_start", "message": message}))

    def _close(self, out: list[Event]) -> None:
        if self._open is not None:
            out.append(("content_block_stop", {"type": "content_block_stop", "index": self._block}))
            if self._open != "text":
                self._closed_tools.add(self._open)
            self._open = None

    def _open_block(self, out: list[Event], key: Any, block: dict[str, Any]) -> None:
        self._close(out)
        self._open, self._block = key, self._next
        self._next += 1
        start = {"type": "content_block_start", "index": self._block, "content_block": block}
        out.append(("content_block_start", start))

    def _tool_delta(self, out: list[Event], call: Mapping[str, Any]) -> str | None:
        key = call.get("index")
        if key is None:  # servers that omit the index: a new id starts a new call
            new = call.get("id") is not None or self._open is None or self._open == "text"
            key = len(self._tools) if new else self._open
        function = call.get("function") or {}
        if key in self._closed_tools:
            return f"tool call {key} continued after its block was closed"
        if key != self._open:
            block_id = call.get("id") or tool_use_id(self._message_id, key)
            name = function.get("name") or ""
            block: dict[str, Any] = {"type": "tool_use", "id": block_id, "name": name, "input": {}}
            self._open_block(out, key, block)
            self._tools[key] = self._block
        arguments = function.get("arguments")
        if arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            data = {"type": "content_block_delta", "index": self._block, "delta": delta}
            out.append(("content_block_delta", data))
        return None

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        """The events for one decoded OpenAI chunk (an ``{"error": …}`` object fails the stream)."""
        if self._done:
            return []
        out: list[Event] = []
        try:
            problem = self._feed(chunk, out)
        except (AttributeError, TypeError, KeyError, IndexError):  # not an OpenAI chunk's shape
            problem = "malformed chunk from the neuron"
        return out + self.fail(problem) if problem is not None else out

    def _feed(self, chunk: Mapping[str, Any], out: list[Event]) -> str | None:
        error = chunk.get("error")
        if error is not None:
            error = error if isinstance(error, Mapping) else {"message": str(error)}
            out += self.fail(str(error.get("message") or "upstream error"), str(error.get("type")))
            return None
        chunk_usage = chunk.get("usage")
        if not self._started:
            self._start(out, chunk_usage)
        if chunk_usage is not None:
            self._usage = chunk_usage
        choices = chunk.get("choices")
        if not choices:
            return None
        choice = choices[0]
        delta = choice.get("delta")
        if delta:
            text = delta.get("content")
            if text:
                self._chunks += 1
                if self._open != "text":
                    self._open_block(out, "text", {"type": "text", "text": ""})
                text_delta = {"type": "text_delta", "text": text}
                data = {"type": "content_block_delta", "index": self._block, "delta": text_delta}
                out.append(("content_block_delta", data))
            calls = delta.get("tool_calls")
            if calls:
                self._chunks += 1
                for call in calls:
                    problem = self._tool_delta(out, call)
                    if problem is not None:
                        return problem
        finish = choice.get("finish_reason")
        if finish is not None:
            self._finish = finish
            self._matched = choice.get("stop_reason")
        return None

    def finish(self) -> list[Event]:
        """Closes the open block and ends the message; idempotent, nothing after ``fail``."""
        if self._done:
            return []
        self._done = True
        out: list[Event] = []
        if not self._started:
            self._start(out, self._usage)
        self._close(out)
        reason, sequence = stop_reason(
            self._finish, self._matched, bool(self._tools), self._stop_sequences
        )
        end_usage = usage(self._usage)
        if self._usage is None:
            end_usage["output_tokens"] = self._chunks
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        out.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": end_usage}))
        out.append(_STOP)
        return out

    def fail(self, message: str, error_type: str = "api_error") -> list[Event]:
        """The ``error`` event that ends the stream; nothing once it has ended."""
        if self._done:
            return []
        self._done = True
        return [error_event(message, error_type)]

    def ping(self) -> Event:
        """A keep-alive event, harmless anywhere in the stream."""
        return _PING
