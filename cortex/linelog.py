"""A hot log line (one per request) written without ``logging``'s record machinery.

I/O: appends to the stream ``logs.setup`` installed, buffered and written at most
``FLUSH_S`` later (before any other log line, and at exit, so lines keep their
order). The line reads exactly as ``logs``' formatters would write it: the logger's
name, level and ``extra`` fields, in text or JSON. While no sink is installed (the
process did not call ``logs.setup``) or logging was configured past it (a handler
added on the way to the root), the line goes through ``logging`` as any other.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import time
from typing import Any, TextIO

FLUSH_S = 0.1  # a line reaches the stream at most this late
MAX_BUFFERED = 64 * 1024  # characters; past it the buffer is written at once
_ENCODE = json.JSONEncoder(default=str).encode  # json.dumps(..., default=str), built once


class Sink:
    """The buffered stream behind ``setup``'s handler; written on a timer."""

    def __init__(self, stream: TextIO, json_format: bool, handler: logging.Handler) -> None:
        self.stream = stream
        self.json = json_format
        self.handler = handler  # the root handler this sink stands in for
        self._lines: list[str] = []
        self._size = 0
        self._second = -1
        self._stamp = ""

    def stamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:  # one strftime per second, as ``TextFormatter``
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second))
        return self._stamp

    def add(self, line: str) -> None:
        if not self._lines:
            try:
                asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
            except RuntimeError:  # no loop: nothing would flush later
                self._lines.append(line)
                self.flush()
                return
        self._lines.append(line)
        self._size += len(line)
        if self._size > MAX_BUFFERED:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        text = "".join(self._lines)
        self._lines.clear()
        self._size = 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: as logging, carry on
            pass


class _Installed:
    sink: Sink | None = None


def install(sink: Sink | None) -> None:
    """Route ``LineLog`` lines to ``sink`` (``logs.setup`` does), or back to logging."""
    flush()
    _Installed.sink = sink


def flush() -> None:
    """Write what is buffered now (shutdown; before another log line)."""
    if _Installed.sink is not None:
        _Installed.sink.flush()


atexit.register(flush)


class LineLog:
    """One logger's hot line: ``write(message, fields)`` at INFO, like
    ``logger.info(message, extra=fields)``, minus the record, lock and per-line write."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.logger = logging.getLogger(name)

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def _direct(self) -> Sink | None:
        """The sink, when ``setup``'s handler is the only one this logger reaches."""
        sink = _Installed.sink
        if sink is None:
            return None
        logger: logging.Logger | None = self.logger
        while logger is not None:
            if logger.filters:
                return None
            if logger.handlers:
                return sink if logger.handlers == [sink.handler] and not logger.parent else None
            if not logger.propagate:
                return None
            logger = logger.parent
        return None

    def write(self, message: str, fields: dict[str, Any]) -> None:
        sink = self._direct()
        if sink is None:
            self.logger.info(message, extra=fields)
            return
        now = time.time()
        if sink.json:
            entry = {"ts": round(now, 3), "level": "info", "logger": self.name, "msg": message}
            entry.update(fields)
            sink.add(_ENCODE(entry) + "\n")
        else:
            pairs = " ".join([f"{k}={v}" for k, v in fields.items()])
            sink.add(f"{sink.stamp(now)} info    {self.name}: {message} {pairs}\n")
