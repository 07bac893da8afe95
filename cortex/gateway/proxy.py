"""Relaying a neuron's response to the client, byte for byte, and waiting politely.

I/O: the upstream request and the client response. ``ClientLink`` prepares the
client's SSE response lazily: only when a keep-alive is due (queue, cold load)
or the upstream answers, so an early error can still use its real status.
``relay`` copies upstream chunks as they arrive; ``tap`` sees every chunk for
metrics without changing it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from cortex.core.envelopes import stream_error_frame
from cortex.errors import ApiError, UpstreamFailed, UpstreamTimeout, UpstreamUnreachable
from cortex.gateway.client import CONNECT_TIMEOUT_S, error_from_neuron

log = logging.getLogger("cortex.gateway.proxy")

T = TypeVar("T")
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class ClientLink:
    """The client's side of one request, for streaming clients."""

    def __init__(
        self, request: web.Request, dialect: str, keepalive: bytes, headers: dict[str, str]
    ) -> None:
        self.request = request
        self.dialect = dialect
        self.keepalive = keepalive
        self.headers = headers
        self.response: web.StreamResponse | None = None
        self.failed: ApiError | None = None  # the error that ended a started stream

    async def prepare(
        self, status: int = 200, content_type: str | None = None
    ) -> web.StreamResponse:
        if self.response is None:
            headers = dict(SSE_HEADERS, **self.headers)
            if content_type:
                headers["Content-Type"] = content_type
            self.response = web.StreamResponse(status=status, headers=headers)
            await self.response.prepare(self.request)
        return self.response

    async def tick(self) -> None:
        response = await self.prepare()
        await response.write(self.keepalive)

    async def fail(self, error: ApiError) -> web.StreamResponse:
        """An error after the stream started: a final error frame in the client's dialect."""
        self.failed = error
        response = await self.prepare()
        await response.write(stream_error_frame(error, self.dialect))
        await response.write_eof()
        return response


async def with_keepalive(work: Awaitable[T], link: ClientLink | None, every_s: float) -> T:
    """Await ``work``; if ``link`` is set, send it a keep-alive every ``every_s``."""
    if link is None or every_s <= 0:
        return await work
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every_s)
            if done:
                return task.result()
            await link.tick()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


Tap = Callable[[bytes], None]


async def watched(work: Awaitable[T], alive: Callable[[], Awaitable[bool]], every_s: float) -> T:
    """Await ``work``; each ``every_s`` without a result, ask ``alive()`` and give up
    with a 504 when the neuron no longer answers (a silent, not a slow, neuron)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every_s)
            if done:
                return task.result()
            if not await alive():
                raise UpstreamTimeout("the neuron stopped answering while generating")
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def open_upstream(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    stream: bool,
    idle_timeout_s: float,
    total_timeout_s: float,
) -> aiohttp.ClientResponse:
    """Send the request; raises ``UpstreamUnreachable`` for a refused or reset
    connection before any response byte (the caller may retry elsewhere)."""
    timeout = _timeout(stream, idle_timeout_s, total_timeout_s)
    try:
        return await session.post(url, data=body, headers=headers, timeout=timeout)
    except aiohttp.ConnectionTimeoutError:  # nothing was sent: as good as refused
        raise UpstreamUnreachable("the neuron did not accept a connection") from None
    except asyncio.TimeoutError:
        raise UpstreamTimeout("the neuron sent nothing in time") from None
    except aiohttp.ClientConnectionError as exc:  # refused, reset, closed: nothing generated
        raise UpstreamUnreachable(f"the neuron is unreachable: {type(exc).__name__}") from None
    except aiohttp.ClientError as exc:
        raise UpstreamFailed(f"the neuron failed: {type(exc).__name__}") from None


@functools.lru_cache(maxsize=8)
def _timeout(stream: bool, idle_timeout_s: float, total_timeout_s: float) -> aiohttp.ClientTimeout:
    # Streams: a read may wait at most idle_timeout_s (SPEC: not a total deadline).
    # Non-streams send nothing until the answer is whole, so only the total bounds them.
    return aiohttp.ClientTimeout(
        total=None if stream else total_timeout_s,
        sock_connect=CONNECT_TIMEOUT_S,
        sock_read=idle_timeout_s if stream else None,
    )


class IdleWatch:
    """A stream's idle timeout (the upstream's ``sock_read``), kept per stream, not per read.

    aiohttp re-arms a timer on every read, a good part of relaying a small chunk. This
    takes the timeout over from the connection: a chunk only stamps the time, and one
    timer, firing at most once per idle period, re-arms itself for what is left or,
    when the upstream has really been silent that long, closes it: the pending read
    then fails, and ``expired`` tells that failure from others.
    """

    def __init__(self, upstream: aiohttp.ClientResponse) -> None:
        self.expired = False
        self._upstream = upstream
        self._handle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()
        connection = upstream.connection
        protocol = connection.protocol if connection is not None else None
        self._idle_s = (protocol.read_timeout if protocol is not None else None) or 0.0
        if protocol is not None and self._idle_s > 0:
            protocol.read_timeout = None  # its timer, armed at the headers, lapses at the next read
            self._handle = self._loop.call_at(self.last + self._idle_s, self._check)

    def seen(self) -> None:
        self.last = self._loop.time()

    def _check(self) -> None:
        due = self.last + self._idle_s
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._check)
            return
        self.expired = True
        self._upstream.close()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


async def relay(
    upstream: aiohttp.ClientResponse,
    link: ClientLink,
    tap: Tap | None = None,
    transform: Callable[[bytes], bytes] | None = None,
) -> web.StreamResponse:
    """Copy the upstream stream to the client as it arrives; a failure mid-stream
    ends it with an error frame in the client's dialect."""
    response = await link.prepare(upstream.status, upstream.headers.get("Content-Type"))
    watch = IdleWatch(upstream)
    try:
        async for chunk in upstream.content.iter_any():
            watch.seen()
            if tap is not None:
                tap(chunk)
            await response.write(transform(chunk) if transform else chunk)
    except ConnectionResetError:
        raise  # a write to a client that left (aiohttp's error is also a ClientError)
    except asyncio.TimeoutError:
        return await link.fail(UpstreamTimeout("the neuron went silent mid-stream"))
    except aiohttp.ClientError as exc:
        if watch.expired:
            return await link.fail(UpstreamTimeout("the neuron went silent mid-stream"))
        log.warning("upstream failed mid-stream: %s", type(exc).__name__)
        return await link.fail(UpstreamFailed("the neuron failed mid-stream"))
    finally:
        watch.stop()
        upstream.release()
    await response.write_eof()
    return response


async def read_whole(upstream: aiohttp.ClientResponse) -> bytes:
    try:
        return await upstream.read()
    except asyncio.TimeoutError:
        raise UpstreamTimeout("the neuron went silent") from None
    except aiohttp.ClientError:
        raise UpstreamFailed("the neuron failed while answering") from None
    finally:
        upstream.release()


def upstream_error(status: int, raw: bytes, node: str) -> ApiError:
    """A neuron's error answer, as an error for the client (4xx keep their message)."""
    try:
        data: Any = json.loads(raw)
    except ValueError:
        data = None
    log.warning("neuron %s answered %d: %s", node, status, raw[:500])
    return error_from_neuron(node, status, data)
