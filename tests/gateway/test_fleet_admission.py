"""The per-(node, model) queue: 429 when full, a place freed at once when a client leaves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp

from tests.fleet import RunningGateway, chat, eventually, http, local_fleet

# One request at a time, one waiting; each word takes 100 ms, so a long text holds the slot.
MODELS = """
[[models]]
id = "m"
harness = "echo"
max_concurrency = 1
options = {delay_ms = 100}
"""
LONG = " ".join(["word"] * 200)


def counts(gw: RunningGateway) -> tuple[int, int]:
    node = gw.state.store.view.node("n1")
    entry = node.model("m") if node is not None else None
    return (entry.in_flight, entry.queued) if entry is not None else (0, 0)


@contextlib.asynccontextmanager
async def background(coro: object) -> AsyncIterator[asyncio.Task[object]]:
    task: asyncio.Task[object] = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def hold(session: aiohttp.ClientSession, gw: RunningGateway) -> tuple[int, object]:
    return await chat(session, gw, "m", LONG)


async def test_full_queue_answers_429_with_retry_after() -> None:
    """Beyond max_queue_per_model waiting requests, the next one gets 429 and Retry-After."""
    async with local_fleet(MODELS, vram_mb=[1000], max_queue_per_model=1) as (gw, _):
        async with http() as session, background(hold(session, gw)):
            await eventually(lambda: counts(gw) == (1, 0), "the first request to run")
            async with background(hold(session, gw)):
                await eventually(lambda: counts(gw) == (1, 1), "the second request to queue")
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                async with session.post(gw.url + "/v1/chat/completions", json=body) as r:
                    assert r.status == 429
                    assert int(r.headers["Retry-After"]) >= 1
                    assert (await r.json())["error"]["code"] == "queue_full"


async def test_client_leaving_the_queue_frees_its_place_at_once() -> None:
    """A queued client that disconnects gives its place to the next request immediately."""
    async with local_fleet(MODELS, vram_mb=[1000], max_queue_per_model=1) as (gw, _):
        async with http() as session, background(hold(session, gw)):
            await eventually(lambda: counts(gw) == (1, 0), "the first request to run")
            async with http() as leaver, background(hold(leaver, gw)):
                await eventually(lambda: counts(gw) == (1, 1), "the second request to queue")
            # The leaver's connection is closed: its place is free, not held to a timeout.
            await eventually(lambda: counts(gw) == (1, 0), "the queued place to be freed")
            async with background(hold(session, gw)):
                await eventually(lambda: counts(gw) == (1, 1), "a new request to queue")
                status, _ = await chat(session, gw, "m")
                assert status == 429
