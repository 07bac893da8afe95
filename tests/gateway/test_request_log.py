"""The request line's fast writer reads exactly like logging's, in order, at its level."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cortex import linelog, logs

FIELDS = {"request_id": "r1", "model": "m", "status": 200, "ttft_s": None, "cold_start": False}


@contextmanager
def set_up(fmt: str, level: str = "info") -> Iterator[io.StringIO]:
    """``logs.setup`` onto a string stream; logging's previous state comes back after."""
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    stream, stderr = io.StringIO(), sys.stderr
    sys.stderr = stream
    try:
        logs.setup(fmt, level)
    finally:
        sys.stderr = stderr
    try:
        yield stream
    finally:
        linelog.install(None)
        root.handlers[:] = handlers
        root.setLevel(root_level)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_fast_line_reads_as_the_logging_line(fmt: str) -> None:
    """Same level, logger, message and fields as ``logger.info(..., extra=)`` would write."""
    with set_up(fmt) as stream:
        logging.getLogger("cortex.gateway.requests").info("request", extra=FIELDS)
        linelog.LineLog("cortex.gateway.requests").write("request", FIELDS)
        linelog.flush()
    slow, fast = stream.getvalue().splitlines()
    if fmt == "json":
        slow_entry, fast_entry = json.loads(slow), json.loads(fast)
        assert abs(slow_entry.pop("ts") - fast_entry.pop("ts")) < 5
        assert slow_entry == fast_entry
    else:
        assert slow.split(" ", 1)[1] == fast.split(" ", 1)[1]  # all but the time stamp


async def test_lines_are_buffered_briefly_and_stay_in_order() -> None:
    """A request line waits at most FLUSH_S, and any other log line writes it out first."""
    with set_up("text") as stream:
        hot = linelog.LineLog("cortex.gateway.requests")
        hot.write("request", {"n": 1})
        assert stream.getvalue() == ""
        await asyncio.sleep(linelog.FLUSH_S * 2)
        assert "n=1" in stream.getvalue()
        hot.write("request", {"n": 2})
        logging.getLogger("cortex.gateway").warning("after")
    lines = stream.getvalue().splitlines()
    assert ["n=1" in lines[0], "n=2" in lines[1], "after" in lines[2]] == [True] * 3


def test_the_level_filters_and_other_handlers_get_records() -> None:
    """Filtered below INFO; a handler added to the logger still receives the record."""
    with set_up("text", "warning"):
        assert not linelog.LineLog("cortex.gateway.requests").enabled()
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    with set_up("json") as stream:
        logger = logging.getLogger("cortex.gateway.requests")
        handler = Keep()
        logger.addHandler(handler)
        try:
            linelog.LineLog("cortex.gateway.requests").write("request", {"n": 3})
        finally:
            logger.removeHandler(handler)
        linelog.flush()
    assert vars(seen[0])["n"] == 3
    assert json.loads(stream.getvalue())["n"] == 3  # and it propagated to the root as ever
