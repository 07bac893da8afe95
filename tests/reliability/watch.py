"""Async helpers for the reliability tests: requests through the gateway and checks.

Every request carries a total timeout, so a hung stream fails the test instead of
hanging it; the checks read the processes' own ``/metrics`` from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from tests.reliability.cluster import API_KEY, NEURON_TOKEN, Cluster, Neuron, parse_metrics

REQUEST_BOUND_S = 20.0


def bounded(seconds: float = REQUEST_BOUND_S) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


def client_headers(cluster: Cluster) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"} if cluster.api_keys else {}


async def chat(
    session: aiohttp.ClientSession,
    cluster: Cluster,
    model: str,
    *,
    stream: bool = False,
    text: str = "one two three",
    anthropic: bool = False,
    bound_s: float = REQUEST_BOUND_S,
    **extra: Any,
) -> tuple[int, str]:
    """One request through the gateway, read to its end: (status, body text)."""
    message = [{"role": "user", "content": text}]
    if anthropic:
        path, body = "/v1/messages", {"model": model, "max_tokens": 64, "messages": message}
    else:
        path, body = "/v1/chat/completions", {"model": model, "messages": message}
    body.update(stream=stream, **extra)
    async with session.post(
        cluster.url + path, json=body, headers=client_headers(cluster), timeout=bounded(bound_s)
    ) as r:
        return r.status, await r.text()


def stream_ok(status: int, text: str) -> bool:
    """A stream that finished normally in either dialect."""
    return status == 200 and ("data: [DONE]" in text or "event: message_stop" in text)


def stream_failed(status: int, text: str) -> bool:
    """An error in the client's dialect: an error status or a final error frame."""
    if status >= 400:
        return True
    return '"error"' in text.rsplit("data:", 1)[-1] or "event: error" in text


async def metrics(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, str], float]:
    headers = {"Authorization": f"Bearer {NEURON_TOKEN}"}
    async with session.get(url + "/metrics", headers=headers, timeout=bounded(5)) as r:
        assert r.status == 200, await r.text()
        return parse_metrics(await r.text())


async def neuron_metrics(
    session: aiohttp.ClientSession, neuron: Neuron
) -> dict[tuple[str, str], float]:
    return await metrics(session, neuron.watch_url)


def total(samples: dict[tuple[str, str], float], name: str, **labels: str) -> float:
    """Sum of ``name`` over the series whose labels include ``labels``."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for (n, ls), v in samples.items() if n == name and all(w in ls for w in want))


async def loads(session: aiohttp.ClientSession, neuron: Neuron, model: str) -> int:
    """Real loads of ``model`` on the neuron since it started."""
    samples = await neuron_metrics(session, neuron)
    return int(total(samples, "neuron_model_load_seconds_count", model=model))


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, bound_s: float = 10.0, step_s: float = 0.1
) -> None:
    """Await ``check()`` in steps until it holds; fail after ``bound_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while True:
        try:
            if await check():
                return
        except (aiohttp.ClientError, asyncio.TimeoutError, AssertionError):
            pass
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(step_s)


async def node_up(session: aiohttp.ClientSession, cluster: Cluster, node: str) -> bool:
    samples = await metrics(session, cluster.metrics_url)
    return total(samples, "cortex_node_up", node=node) == 1


async def admin_load(
    session: aiohttp.ClientSession, cluster: Cluster, model: str, node: str
) -> None:
    async with session.post(
        cluster.url + "/admin/load",
        json={"model": model, "node": node},
        headers=client_headers(cluster),
        timeout=bounded(),
    ) as r:
        assert r.status == 200, await r.text()


async def settled(session: aiohttp.ClientSession, cluster: Cluster) -> None:
    """Nothing leaked: gateway counts and every live neuron's in-flight are back to zero,
    no model was loaded twice on one neuron, and the gateway still serves."""

    async def zero() -> bool:
        gateway = await metrics(session, cluster.metrics_url)
        if total(gateway, "cortex_in_flight") or total(gateway, "cortex_queued"):
            return False
        for neuron in cluster.neurons.values():
            if neuron.proc is None or not neuron.proc.alive:
                continue
            samples = await neuron_metrics(session, neuron)
            if total(samples, "neuron_in_flight") or total(samples, "neuron_queued"):
                return False
        return True

    await eventually(zero, "in-flight and queued counts to return to zero")
    for neuron in cluster.neurons.values():
        if neuron.proc is not None and neuron.proc.alive:
            samples = await neuron_metrics(session, neuron)
            counts = {
                ls: v for (n, ls), v in samples.items() if n == "neuron_model_load_seconds_count"
            }
            assert all(v <= 1 for v in counts.values()), f"double load on {neuron.name}: {counts}"
    status, text = await chat(session, cluster, "m")
    assert status == 200, text
    assert json.loads(text)["choices"][0]["message"]["content"] == "one two three"


WORDS = " ".join(f"w{i}" for i in range(60))  # 6 s at the "slow" model's 100 ms a word


@contextlib.asynccontextmanager
async def open_stream(
    session: aiohttp.ClientSession,
    cluster: Cluster,
    model: str,
    *,
    anthropic: bool = False,
    text: str = WORDS,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """A started stream, its first word already read (bounded)."""
    message = [{"role": "user", "content": text}]
    body: dict[str, Any] = {"model": model, "messages": message, "stream": True}
    path = "/v1/messages" if anthropic else "/v1/chat/completions"
    if anthropic:
        body["max_tokens"] = 1000
    async with session.post(
        cluster.url + path, json=body, headers=client_headers(cluster), timeout=bounded()
    ) as r:
        assert r.status == 200, await r.text()
        marker = b"text_delta" if anthropic else b'"content":"w'
        seen = b""
        while marker not in seen:
            line = await asyncio.wait_for(r.content.readline(), REQUEST_BOUND_S)
            assert line, f"the stream ended before its first word: {seen!r}"
            seen += line
        yield r


async def rest_of(response: aiohttp.ClientResponse, bound_s: float = REQUEST_BOUND_S) -> str:
    """Everything left in a started stream; it must end within ``bound_s``."""
    return (await asyncio.wait_for(response.content.read(), bound_s)).decode()
