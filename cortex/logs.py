"""Log set-up for both roles: one line per event, key=value text or JSON.

Fields passed through ``extra=`` (request id, model, timings) are appended, so a
request's line can be grepped or parsed by machines with ``--log-format json``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from cortex import linelog

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class TextFormatter(logging.Formatter):
    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        # One strftime per second: localtime() may stat the zone file on every call.
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second))
        stamp = self._stamp
        line = f"{stamp} {record.levelname.lower():7} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[TextIO]
else:  # not subscriptable at run time before Python 3.11
    _StreamHandler = logging.StreamHandler


class _Handler(_StreamHandler):
    """stderr, after the buffered hot lines (``linelog``): lines stay in order."""

    def emit(self, record: logging.LogRecord) -> None:
        linelog.flush()
        super().emit(record)


def setup(fmt: str = "text", level: str = "info") -> None:
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Hot lines (the gateway's request line) skip the record and join stderr in batches.
    linelog.install(linelog.Sink(sys.stderr, fmt == "json", handler))
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Neither formatter prints the caller, thread or process: skip gathering them
    # (the stack walk alone is a good part of a request line's cost).
    logging._srcfile = None  # documented in logging's source as the way to skip it
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
