"""The OpenAI routes through a real gateway and a real echo neuron on loopback."""

from __future__ import annotations

import asyncio
import json
import time

from tests.fleet import http, local_fleet

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "one two three"}]}


async def test_chat_completion_round_trips_through_the_gateway() -> None:
    """A chat request is routed, cold-loaded and answered by the echo model."""
    async with local_fleet() as (gw, _), http() as session:
        async with session.post(gw.url + "/v1/chat/completions", json=CHAT) as r:
            body = await r.json()
            assert r.status == 200, body
            assert r.headers["x-request-id"].startswith("req_")
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "one two three"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


async def test_alias_routes_to_its_model() -> None:
    """A catalogue alias reaches the model it names."""
    async with local_fleet() as (gw, _), http() as session:
        async with session.post(
            gw.url + "/v1/chat/completions", json={**CHAT, "model": "parrot"}
        ) as r:
            assert r.status == 200
            assert (await r.json())["model"] == "echo"


async def test_stream_arrives_incrementally_not_buffered() -> None:
    """Streamed chunks reach the client as the neuron produces them."""
    models = '[[models]]\nid = "slow"\nharness = "echo"\noptions = {delay_ms = 150}\n'
    body = {**CHAT, "model": "slow", "stream": True}
    async with local_fleet(models) as (gw, _), http() as session:
        async with session.post(gw.url + "/v1/chat/completions", json=body) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            arrivals = []
            async for line in r.content:
                if (
                    line.startswith(b"data: {")
                    and b'"content":"' in line
                    and b'"content":""' not in line
                ):
                    arrivals.append(time.monotonic())
    assert len(arrivals) == 3
    # Each word came in its own read, paced by the neuron: the gateway did not hold them.
    assert arrivals[-1] - arrivals[0] >= 0.2


async def test_stream_follows_the_openai_chunk_contract() -> None:
    """Role first, finish_reason with usage last, an include_usage chunk, then [DONE]."""
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with local_fleet() as (gw, _), http() as session:
        async with session.post(gw.url + "/v1/chat/completions", json=body) as r:
            raw = (await r.read()).decode()
    frames = [f[len("data: ") :] for f in raw.split("\n\n") if f.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and "created" in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-2]["usage"]["completion_tokens"] == 3
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 6


async def test_bad_input_gets_openai_errors_and_the_gateway_keeps_serving() -> None:
    """Malformed JSON, a missing model, wrong types and unknown models get clear errors."""
    cases = [
        (b"{not json", 400, None),
        (json.dumps({"messages": []}).encode(), 400, "model"),
        (json.dumps({"model": 3}).encode(), 400, "model"),
        (json.dumps({**CHAT, "stream": "yes"}).encode(), 400, "stream"),
        (json.dumps({**CHAT, "model": "nope"}).encode(), 404, None),
        (json.dumps({**CHAT, "n": 2}).encode(), 400, None),
        (json.dumps({**CHAT, "messages": "hi"}).encode(), 400, None),
        (b"[1, 2]", 400, None),
    ]
    async with local_fleet() as (gw, _), http() as session:
        for raw, status, param in cases:
            async with session.post(
                gw.url + "/v1/chat/completions",
                data=raw,
                headers={"Content-Type": "application/json"},
            ) as r:
                body = await r.json()
                assert r.status == status, (raw, body)
                error = body["error"]
                assert set(error) == {"message", "type", "code", "param"}
                assert error["message"] and "Traceback" not in error["message"]
                if param:
                    assert error["param"] == param
        async with session.post(gw.url + "/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200


async def test_unknown_model_error_lists_what_exists() -> None:
    """A 404 for an unknown model names it and the known ones."""
    async with local_fleet() as (gw, _), http() as session:
        async with session.post(
            gw.url + "/v1/chat/completions", json={**CHAT, "model": "gpt-9"}
        ) as r:
            message = (await r.json())["error"]["message"]
    assert "gpt-9" in message and "echo" in message


async def test_routes_not_yet_served_say_so() -> None:
    """/v1/responses answers 404 naming the route, in the OpenAI shape."""
    async with local_fleet() as (gw, _), http() as session:
        async with session.post(gw.url + "/v1/responses", json={}) as r:
            assert r.status == 404
            assert "/v1/responses" in (await r.json())["error"]["message"]


async def test_concurrent_cold_requests_share_one_load() -> None:
    """Twenty concurrent requests for a cold model cause exactly one load."""
    async with local_fleet() as (gw, neuron), http() as session:

        async def one() -> int:
            async with session.post(gw.url + "/v1/chat/completions", json=CHAT) as r:
                return r.status

        statuses = await asyncio.gather(*(one() for _ in range(20)))
        samples = neuron.state.metrics.load_seconds.collect()[0].samples
    assert statuses == [200] * 20
    count = next(
        s.value for s in samples if s.name.endswith("_count") and s.labels["model"] == "echo"
    )
    assert count == 1


async def test_models_list_serves_both_sdk_shapes() -> None:
    """The list carries OpenAI fields, Anthropic paging fields and fleet placement."""
    async with local_fleet() as (gw, _), http() as session:
        async with session.get(gw.url + "/v1/models") as r:
            listing = await r.json()
        async with session.get(gw.url + "/v1/models/parrot") as r:
            one = await r.json()
    assert listing["object"] == "list" and listing["has_more"] is False
    assert listing["first_id"] == listing["last_id"] == "echo"
    entry = listing["data"][0]
    assert entry["feasible_on"] == ["n1"] and entry["aliases"] == ["parrot"]
    assert entry["loaded"] is False and entry["type"] == "model"
    assert one["id"] == "echo"


async def test_health_reports_nodes() -> None:
    """/health is 200 with the node count while a node is healthy."""
    async with local_fleet() as (gw, _), http() as session:
        async with session.get(gw.url + "/health") as r:
            assert r.status == 200
            assert (await r.json())["nodes"] == {"healthy": 1, "total": 1}
