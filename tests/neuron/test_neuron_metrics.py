"""The neuron's /metrics after real requests to a real echo neuron on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.fleet import http, start_neuron

LOAD = {"model_id": "echo", "harness": "echo", "options": {"vram_mb": 250, "delay_ms": 20}}
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "one two three four"}]}


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, str], float]:
    """Samples by (name, the ``model`` label), ignoring bucket samples and ``_created``."""
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith(("_bucket", "_created")):
                out[s.name, s.labels.get("model", "")] = s.value
    return out


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> bytes:
    async with session.post(url, json=body) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def test_neuron_series_follow_the_spec() -> None:
    """Generations, tokens, prefill, decode speed, load time and memory are recorded per model."""
    async with start_neuron(vram_mb=(1000,)) as neuron, http() as session:
        await post(session, neuron.url + "/models/load", LOAD)
        await post(session, neuron.url + "/models/load", LOAD)  # idempotent: no second load
        await post(session, neuron.url + "/v1/chat/completions", CHAT)
        await post(session, neuron.url + "/v1/chat/completions", {**CHAT, "stream": True})
        await post(session, neuron.url + "/v1/completions", {"model": "echo", "prompt": "a b"})
        await post(session, neuron.url + "/v1/embeddings", {"model": "echo", "input": "x y z"})
        m = await scrape(session, neuron.url)
        await post(session, neuron.url + "/models/unload", {"model_id": "echo"})
        after = await scrape(session, neuron.url)
    assert m["neuron_requests_total", "echo"] == 4
    assert m["neuron_prompt_tokens_total", "echo"] == 4 + 4 + 2 + 3
    assert m["neuron_completion_tokens_total", "echo"] == 4 + 4 + 2
    assert m["neuron_prefill_seconds_count", "echo"] == 3
    assert m["neuron_prefill_seconds_sum", "echo"] >= 3 * 0.015  # the echo's per-token pause
    assert m["neuron_decode_tokens_per_second_count", "echo"] == 3
    assert m["neuron_model_load_seconds_count", "echo"] == 1
    assert m["neuron_model_memory_mb", "echo"] == 250
    assert m["neuron_in_flight", "echo"] == 0 and m["neuron_queued", "echo"] == 0
    assert after["neuron_model_memory_mb", "echo"] == 0


async def test_in_flight_and_queued_are_live_and_a_cut_stream_counts_what_it_got() -> None:
    """A scrape during generation shows it in flight; a stream its client cut still counts."""
    words = " ".join(f"w{i}" for i in range(30))
    body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": words}]}
    load = {**LOAD, "options": {"vram_mb": 10, "delay_ms": 50, "max_batch": 1}}
    async with start_neuron(vram_mb=(1000,)) as neuron, http() as session:
        await post(session, neuron.url + "/models/load", load)
        first = await session.post(neuron.url + "/v1/chat/completions", json=body)
        second = asyncio.ensure_future(session.post(neuron.url + "/v1/chat/completions", json=body))
        seen = 0
        async for line in first.content:
            seen += b'"content":"w' in line
            if seen == 4:
                break
        for _ in range(100):  # the second request may still be on its way in
            during = await scrape(session, neuron.url)
            if during.get(("neuron_queued", "echo")) == 1:
                break
            await asyncio.sleep(0.02)
        first.close()
        (await second).close()
        for _ in range(100):
            done = await scrape(session, neuron.url)
            if done.get(("neuron_requests_total", "echo")) == 2:
                break
            await asyncio.sleep(0.05)
    assert during["neuron_in_flight", "echo"] == 1 and during["neuron_queued", "echo"] == 1
    assert done["neuron_requests_total", "echo"] == 2
    assert 4 <= done["neuron_completion_tokens_total", "echo"] < 30
    assert done["neuron_prompt_tokens_total", "echo"] == 30  # the queued one never ran
