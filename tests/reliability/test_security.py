"""Auth on both roles and the request limits, on in-process servers and a real gateway."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from cortex.core.config import NeuronConfig
from cortex.neuron.app import build_state, create_app
from tests.fleet import REPO, RunningNeuron, http, start_gateway, start_neuron
from tests.reliability.cluster import API_KEY, Cluster
from tests.reliability.watch import admin_load, chat

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi there"}]}
MESSAGE = {"model": "echo", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@contextlib.asynccontextmanager
async def recording_neuron(token: str, seen: list[dict[str, str]]) -> AsyncIterator[RunningNeuron]:
    """An echo neuron whose every request's headers are recorded before its auth runs."""
    config = NeuronConfig(
        port=0, host="127.0.0.1", token=token, default_harness="echo",
        models_dir=os.path.join(REPO, "models"),
    )  # fmt: skip
    state = await build_state(config, config.models_dir)
    app = create_app(state)

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        seen.append(dict(request.headers))
        return await handler(request)

    app.middlewares.insert(0, record)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.port = runner.addresses[0][1]
    try:
        yield RunningNeuron("n1", f"http://127.0.0.1:{state.port}", state, runner)
    finally:
        await runner.cleanup()


async def test_api_keys_answer_401_in_the_clients_dialect() -> None:
    """Without a valid key: 401 in OpenAI or Anthropic shape; /health and /metrics stay open."""
    async with (
        start_neuron() as neuron,
        start_gateway([neuron], api_keys=("k1", "k2")) as gw,
        http() as s,
    ):
        async with s.post(gw.url + "/v1/chat/completions", json=CHAT) as r:
            assert r.status == 401
            assert (await r.json())["error"]["type"] == "authentication_error"
        bad = {"x-api-key": "nope", "anthropic-version": "2023-06-01"}
        async with s.post(gw.url + "/v1/messages", json=MESSAGE, headers=bad) as r:
            assert r.status == 401
            body = await r.json()
            assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
        for headers in ({"Authorization": "Bearer k2"}, {"x-api-key": "k1"}):
            async with s.post(gw.url + "/v1/chat/completions", json=CHAT, headers=headers) as r:
                assert r.status == 200, await r.text()
        async with s.get(gw.url + "/health") as r:
            assert r.status == 200
        async with s.get(gw.url + "/metrics") as r:
            assert r.status == 401  # not served on the API listener, and not open there
        async with s.get(gw.metrics_url + "/metrics") as r:
            assert r.status == 200


async def test_client_credentials_never_reach_a_neuron() -> None:
    """The neuron sees only the gateway's neuron_token, never the client's key headers."""
    seen: list[dict[str, str]] = []
    async with (
        recording_neuron("nt", seen) as neuron,
        start_gateway([neuron], api_keys=("ck",), neuron_token="nt") as gw,
        http() as s,
    ):
        headers = {"Authorization": "Bearer ck", "x-api-key": "ck"}
        async with s.post(gw.url + "/v1/chat/completions", json=CHAT, headers=headers) as r:
            assert r.status == 200, await r.text()
        async with s.post(gw.url + "/v1/messages", json=MESSAGE, headers=headers) as r:
            assert r.status == 200, await r.text()
    assert seen
    for recorded in seen:
        assert recorded.get("Authorization") == "Bearer nt"
        assert "ck" not in " ".join(recorded.values())
        assert not {k.lower() for k in recorded} & {"x-api-key"}


async def test_neuron_token_guards_everything_but_health() -> None:
    """A neuron with a token refuses load, unload and generate without it, and a gateway
    holding the wrong token never routes to it."""
    async with start_neuron(token="right") as neuron, http() as s:
        for path, body in (
            ("/models/load", {"model_id": "echo", "harness": "echo"}),
            ("/models/unload", {"model_id": "echo"}),
            ("/v1/chat/completions", CHAT),
        ):
            async with s.post(neuron.url + path, json=body) as r:
                assert r.status == 401, path
        async with s.get(neuron.url + "/health") as r:
            assert r.status == 200
        assert not neuron.state.registry.slots
        async with start_gateway([neuron], neuron_token="wrong") as gw:
            async with s.post(gw.url + "/v1/chat/completions", json=CHAT) as r:
                assert r.status == 503, await r.text()
        assert not neuron.state.registry.slots


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_deep_or_huge_bodies_are_refused_before_routing(path: str) -> None:
    """JSON nested past 64 levels is a 400, a body past the cap a 413, in the route's dialect."""
    async with start_neuron() as neuron, start_gateway([neuron]) as gw, http() as s:
        base = CHAT if path.endswith("completions") else MESSAGE
        for depth in (65, 100_000):
            nested = '{"model": "echo", "x": ' + "[" * depth + "]" * depth + "}"
            async with s.post(gw.url + path, data=nested) as r:
                assert r.status == 400, depth
                assert "deeper than 64" in await r.text()
        shallow = '{"x": ' + "[" * 60 + "]" * 60 + "}"
        body = dict(base, metadata_ok=shallow)
        async with s.post(gw.url + path, json=body) as r:
            assert r.status == 200, await r.text()
        huge = b'{"model": "echo", "pad": "' + b"x" * (33 * 1024 * 1024) + b'"}'
        async with s.post(gw.url + path, data=io.BytesIO(huge)) as r:
            assert r.status == 413
            shape = await r.json()
            assert "error" in shape and ("type" in shape) == path.endswith("messages")


async def test_max_tokens_is_capped_by_the_models_context() -> None:
    """A max_tokens beyond the model's context length is cut to it on the neuron."""
    models = '[[models]]\nid = "echo"\nharness = "echo"\ncontext_length = 5\n'
    async with start_neuron() as neuron, start_gateway([neuron], models) as gw, http() as s:
        words = " ".join(f"w{i}" for i in range(12))
        body = {
            "model": "echo",
            "max_tokens": 1000,
            "messages": [{"role": "user", "content": words}],
        }
        async with s.post(gw.url + "/v1/chat/completions", json=body) as r:
            answer = await r.json()
        assert answer["choices"][0]["finish_reason"] == "length"
        assert answer["choices"][0]["message"]["content"].split() == words.split()[:5]


@pytest.mark.netns
async def test_real_gateway_enforces_keys_and_header_limits(cluster: Cluster) -> None:
    """The gateway process needs a key, refuses oversized headers, and keeps serving."""
    cluster.api_keys = (API_KEY,)
    cluster.start()
    async with aiohttp.ClientSession() as s:
        await admin_load(s, cluster, "m", "n1")
        async with s.post(cluster.url + "/v1/chat/completions", json=CHAT) as r:
            assert r.status == 401
        headers = {"Authorization": f"Bearer {API_KEY}", "x-padding": "p" * 20_000}
        async with s.post(cluster.url + "/v1/chat/completions", json=CHAT, headers=headers) as r:
            assert r.status in (400, 431)
        many = {f"x-h{i}": "v" for i in range(150)}
        async with s.get(cluster.url + "/health", headers=many) as r:
            assert r.status in (400, 431)
        status, body = await chat(s, cluster, "m")
        assert status == 200, body
