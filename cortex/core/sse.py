"""Incremental Server-Sent Events parser and encoder. Pure: bytes in, events out.

The parser follows the WHATWG event-stream rules: lines end in CRLF, LF or CR (a CRLF
split across two ``feed`` calls counts once); ``field:value`` drops one leading space;
several ``data`` lines join with "\\n"; a blank line dispatches; ``id`` and ``retry`` are
read and ignored; an event still open at end of stream is discarded. Comment lines
(``: keep-alive``) are skipped unless the parser is built with ``comments=True``, in which
case each one comes out as ``SSEEvent(event=None, data=<text>, comment=True)`` so a proxy
can see upstream keep-alives. Lines are split with bytes methods, never byte by byte.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

DONE = b"data: [DONE]\n\n"

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
_compact_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False)
_PREFIXES = {
    name: b"event: " + name.encode() + b"\ndata: "
    for name in (
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    )
}


@attrs.frozen
class SSEEvent:
    """One dispatched event; ``event`` is None when the stream named no type."""

    event: str | None
    data: str
    comment: bool = False


class SSEParser:
    """Feeds arbitrary byte slices of an event stream; returns the events they complete."""

    __slots__ = ("_buf", "_comments", "_data", "_event", "_pending_cr", "_started")

    def __init__(self, *, comments: bool = False) -> None:
        self._comments = comments
        self._buf = b""
        self._pending_cr = False  # the last byte seen was CR: a leading LF next is its pair
        self._started = False  # a leading BOM is stripped once
        self._event: str | None = None
        self._data: list[str] = []

    @property
    def has_partial(self) -> bool:
        """True while an unfinished line or event is buffered (lost if the stream ends now)."""
        return bool(self._buf or self._data or self._event is not None)

    def feed(self, data: bytes) -> list[SSEEvent]:
        if self._pending_cr and data:
            self._pending_cr = False
            if data[:1] == b"\n":
                data = data[1:]
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            self._pending_cr = buf[-1:] == b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = buf.rfind(b"\n")
        if cut < 0:
            self._buf = buf
            return []
        self._buf = buf[cut + 1 :]
        text = buf[:cut].decode("utf-8", "replace")
        if not self._started:
            self._started = True
            if text[:1] == "\ufeff":
                text = text[1:]
        return self._lines(text.split("\n"))

    def close(self) -> list[SSEEvent]:
        """Ends the stream: an event without its closing blank line is discarded (per spec)."""
        self._buf = b""
        self._pending_cr = False
        self._event = None
        self._data = []
        return []

    def _lines(self, lines: list[str]) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    out.append(SSEEvent(self._event or None, "\n".join(data)))
                    data = self._data = []
                self._event = None
            elif line[:5] == "data:":
                data.append(line[6:] if line[5:6] == " " else line[5:])
            elif line[0] == ":":
                if self._comments:
                    out.append(SSEEvent(None, line[2:] if line[1:2] == " " else line[1:], True))
            else:
                name, _, value = line.partition(":")
                if name == "event":
                    self._event = value[1:] if value[:1] == " " else value
                elif name == "data":  # "data" with no colon: an empty data line
                    data.append("")
        return out


def _json(data: Any) -> bytes:
    try:
        return _compact.encode(data).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (legal in JSON text): escape it instead
        return _compact_ascii.encode(data).encode("ascii")


def encode_event(event: str, data: Mapping[str, Any]) -> bytes:
    """``event: <type>\\ndata: <compact json>\\n\\n``."""
    prefix = _PREFIXES.get(event)
    if prefix is None:
        if "\n" in event or "\r" in event:
            raise ValueError(f"event type may not contain a line break: {event!r}")
        prefix = b"event: " + event.encode("utf-8") + b"\ndata: "
    return prefix + _json(data) + b"\n\n"


def encode_data(obj: Any) -> bytes:
    """``data: <compact json>\\n\\n`` (an OpenAI stream frame)."""
    return b"data: " + _json(obj) + b"\n\n"


def comment(text: str = "") -> bytes:
    """A comment frame (keep-alive); every line of ``text`` becomes its own comment line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "".join(f": {line}\n" if line else ":\n" for line in lines).encode("utf-8") + b"\n"
