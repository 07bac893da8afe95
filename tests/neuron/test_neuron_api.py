"""The neuron's HTTP API (SPEC section 2) with the echo harness, on loopback."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp

from tests.fleet import http, start_neuron

ECHO = {"model_id": "echo", "harness": "echo", "options": {"vram_mb": 100}}


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": text}], **extra}


async def _load(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(url + "/models/load", json=body) as r:
        return r.status, await r.json()


async def test_discovery_and_health_describe_the_host() -> None:
    """/discovery lists devices and harnesses; /health reports memory per device."""
    async with start_neuron(vram_mb=[8000, 16000]) as neuron, http() as session:
        async with session.get(neuron.url + "/discovery") as r:
            found = await r.json()
        async with session.get(neuron.url + "/health") as r:
            health = await r.json()
    assert [d["vram_total_mb"] for d in found["devices"]] == [8000, 16000]
    assert {"echo", "onnx"} <= set(found["harnesses"])
    assert found["cpu"]["cores"] >= 1 and found["instance_id"]
    assert health["status"] in ("starting", "ok")
    assert [d["vram_free_mb"] for d in health["devices"]] == [8000, 16000]


async def test_load_is_idempotent_and_concurrent_loads_share_one() -> None:
    """Two concurrent loads of one model load it once; a repeat answers at once."""
    async with start_neuron(vram_mb=[8000]) as neuron, http() as session:
        results = await asyncio.gather(*(_load(session, neuron.url, ECHO) for _ in range(5)))
        again = await _load(session, neuron.url, ECHO)
        samples = neuron.state.metrics.load_seconds.collect()[0].samples
        async with session.get(neuron.url + "/health") as r:
            health = await r.json()
    assert all(status == 200 for status, _ in results) and again[0] == 200
    assert results[0][1] == {"status": "loaded", "model_id": "echo", "vram_used_mb": 100}
    count = [s.value for s in samples if s.name.endswith("_count")]
    assert count == [1]
    assert health["devices"][0]["vram_free_mb"] == 7900


async def test_load_errors_have_their_statuses() -> None:
    """Bad spec 400, source outside models_dir 403, conflicting source 409, too big 507."""
    async with start_neuron(vram_mb=[1000]) as neuron, http() as session:
        assert (await _load(session, neuron.url, {"model_id": 3}))[0] == 400
        outside = {**ECHO, "model_id": "x", "source": "../../etc"}
        assert (await _load(session, neuron.url, outside))[0] == 403
        big = {**ECHO, "model_id": "big", "options": {"vram_mb": 5000}}
        status, body = await _load(session, neuron.url, big)
        assert status == 507 and "5000" in body["error"]["message"]
        assert (await _load(session, neuron.url, ECHO))[0] == 200
        other = {**ECHO, "source": "elsewhere"}
        assert (await _load(session, neuron.url, other))[0] == 409
        unknown = {**ECHO, "model_id": "y", "harness": "nope"}
        status, body = await _load(session, neuron.url, unknown)
        assert status == 404 and "echo" in body["error"]["message"]


async def test_unload_frees_memory_and_unknown_is_404() -> None:
    """Unload frees the model's memory; unloading what is not loaded is 404."""
    async with start_neuron(vram_mb=[1000]) as neuron, http() as session:
        await _load(session, neuron.url, ECHO)
        async with session.post(neuron.url + "/models/unload", json={"model_id": "echo"}) as r:
            assert r.status == 200
        async with session.post(neuron.url + "/models/unload", json={"model_id": "echo"}) as r:
            assert r.status == 404
        async with session.get(neuron.url + "/health") as r:
            assert (await r.json())["devices"][0]["vram_free_mb"] == 1000
        async with session.get(neuron.url + "/models") as r:
            assert await r.json() == []


async def test_endpoint_route_matches_ids_with_slashes_on_the_raw_path() -> None:
    """/models/{id}/endpoint finds ids holding '/', percent-encoded or not."""
    async with start_neuron() as neuron, http() as session:
        await _load(session, neuron.url, {**ECHO, "model_id": "org/model-7b"})
        for path in ("/models/org%2Fmodel-7b/endpoint", "/models/org/model-7b/endpoint"):
            async with session.get(neuron.url + path) as r:
                assert r.status == 200, path
                assert (await r.json())["url"] == neuron.state.bind_url
        async with session.get(neuron.url + "/models/nothing/endpoint") as r:
            assert r.status == 404
    assert neuron.state.bind_url.startswith("http://localhost:")


async def test_echo_honours_stop_max_tokens_and_usage() -> None:
    """The echo model cuts at a stop string (vLLM's stop_reason) or at max_tokens."""
    async with start_neuron() as neuron, http() as session:
        await _load(session, neuron.url, ECHO)
        url = neuron.url + "/v1/chat/completions"
        async with session.post(url, json=chat("a b c d e", stop=["c"])) as r:
            body = await r.json()
        assert body["choices"][0]["message"]["content"] == "a b "
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["choices"][0]["stop_reason"] == "c"
        async with session.post(url, json=chat("a b c d e", max_completion_tokens=2)) as r:
            body = await r.json()
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"]["completion_tokens"] == 2


async def test_echo_answers_tool_markers_and_tool_results() -> None:
    """A @@tool marker becomes a tool call; a tool result is acknowledged in text."""
    async with start_neuron() as neuron, http() as session:
        await _load(session, neuron.url, ECHO)
        url = neuron.url + "/v1/chat/completions"
        ask = chat('call it @@tool:get_weather:{"city": "Paris"}@@ please')
        async with session.post(url, json=ask) as r:
            body = await r.json()
        choice = body["choices"][0]
        call = choice["message"]["tool_calls"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
        history = [
            ask["messages"][0],
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"},
        ]
        async with session.post(url, json={"model": "echo", "messages": history}) as r:
            body = await r.json()
    assert body["choices"][0]["message"]["content"] == "TOOL_RESULT_SEEN: 18C and sunny"


async def test_client_disconnect_stops_generation_and_frees_the_slot() -> None:
    """A client that leaves mid-stream cancels the generation; in-flight drops to zero."""
    async with start_neuron() as neuron, http() as session:
        await _load(session, neuron.url, {**ECHO, "options": {"delay_ms": 200}})
        body = chat(" ".join(["word"] * 50), stream=True)
        async with session.post(neuron.url + "/v1/chat/completions", json=body) as r:
            await r.content.readline()
            slot = neuron.state.registry.slots["echo"]
            assert slot.in_flight == 1
        for _ in range(100):
            if slot.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        assert slot.in_flight == 0


async def test_token_guards_every_route_but_health() -> None:
    """With a token set, routes need Bearer <token>; /health stays open."""
    async with start_neuron(token="s3cret") as neuron, http() as session:
        async with session.get(neuron.url + "/health") as r:
            assert r.status == 200
        async with session.post(neuron.url + "/models/load", json=ECHO) as r:
            assert r.status == 401
            assert (await r.json())["error"]["type"] == "authentication_error"
        headers = {"Authorization": "Bearer s3cret"}
        async with session.post(neuron.url + "/models/load", json=ECHO, headers=headers) as r:
            assert r.status == 200


async def test_tokenize_counts_without_loading() -> None:
    """/tokenize answers exactly from the tokenizer, with the model not loaded."""
    async with start_neuron() as neuron, http() as session:
        body = {
            "model": "echo",
            "harness": "echo",
            "messages": [{"role": "user", "content": "a b c"}],
        }
        async with session.post(neuron.url + "/tokenize", json=body) as r:
            assert await r.json() == {"tokens": 3}
        assert neuron.state.registry.slots == {}


async def test_bad_input_never_gets_plain_text_or_a_traceback() -> None:
    """Malformed bodies and unknown routes get JSON errors and the neuron keeps serving."""
    async with start_neuron() as neuron, http() as session:
        await _load(session, neuron.url, ECHO)
        probes = [
            ("POST", "/v1/chat/completions", b"{oops"),
            ("POST", "/v1/chat/completions", json.dumps(chat("x", temperature="hot")).encode()),
            (
                "POST",
                "/v1/chat/completions",
                json.dumps({"model": "nope", "messages": []}).encode(),
            ),
            ("POST", "/models/unload", b"[]"),
            ("GET", "/no/such/route", b""),
            ("DELETE", "/models/load", b""),
        ]
        for method, path, raw in probes:
            async with session.request(method, neuron.url + path, data=raw) as r:
                assert r.status in (400, 404, 405), (path, r.status)
                body = await r.json()
                assert "Traceback" not in json.dumps(body)
                assert body["error"]["message"]
        async with session.post(neuron.url + "/v1/chat/completions", json=chat("still here")) as r:
            assert (await r.json())["choices"][0]["message"]["content"] == "still here"


async def test_onnx_model_folder_loads_from_models_dir() -> None:
    """The tiny ONNX model loads through the API and answers a chat request."""
    models = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "models")
    async with start_neuron(models_dir=models, default_harness="onnx") as neuron, http() as session:
        status, body = await _load(session, neuron.url, {"model_id": "tiny", "source": "tiny-chat"})
        assert status == 200, body
        request = {
            "model": "tiny",
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "Hi"}],
        }
        async with session.post(neuron.url + "/v1/chat/completions", json=request) as r:
            answer = await r.json()
        bad = {"model_id": "broken", "source": "tiny-chat/tokenizer.json"}
        status, error = await _load(session, neuron.url, bad)
    assert answer["usage"]["completion_tokens"] == 4
    assert 400 <= status < 500 and error["error"]["message"]


async def test_discovery_reports_onnxruntime_providers_once_probed() -> None:
    """Discovery lists the harnesses' execution providers, probed off the event loop."""
    async with start_neuron() as neuron, http() as session:
        providers: list[str] = []
        for _ in range(100):
            async with session.get(neuron.url + "/discovery") as r:
                providers = (await r.json())["providers"]
            if providers:
                break
            await asyncio.sleep(0.05)
    assert "CPUExecutionProvider" in providers


async def test_tokenize_rejects_wrong_types_with_a_400() -> None:
    """/tokenize checks messages, tools and prompt before any harness sees them."""
    async with start_neuron() as neuron, http() as session:
        for body in (
            {"model": "echo", "messages": True},
            {"model": "echo", "messages": [{"role": "user", "content": 3}]},
            {"model": "echo", "prompt": "a", "tools": {"x": 1}},
            {"model": "echo", "prompt": ["a"]},
            {"model": "echo"},
        ):
            async with session.post(
                neuron.url + "/tokenize", json={**body, "harness": "echo"}
            ) as r:
                assert r.status == 400, body
                assert (await r.json())["error"]["message"]
