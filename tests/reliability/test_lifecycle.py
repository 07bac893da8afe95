"""Client disconnects, graceful shutdown and the endpoint trust rule, across namespaces."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest
from aiohttp import web

from tests.reliability.cluster import Cluster
from tests.reliability.watch import (
    admin_load,
    bounded,
    chat,
    eventually,
    neuron_metrics,
    open_stream,
    rest_of,
    settled,
    total,
)

pytestmark = pytest.mark.netns


@pytest.mark.parametrize("anthropic", [False, True], ids=["openai", "anthropic"])
async def test_client_disconnect_stops_generation_on_the_neuron(
    cluster: Cluster, anthropic: bool
) -> None:
    """A client that leaves mid-stream frees the neuron's slot within a step or two."""
    cluster.start()
    n1 = cluster.neurons["n1"]
    async with aiohttp.ClientSession() as s:
        await admin_load(s, cluster, "slow", "n1")
        async with open_stream(s, cluster, "slow", anthropic=anthropic) as r:
            samples = await neuron_metrics(s, n1)
            assert total(samples, "neuron_in_flight", model="slow") == 1
            r.close()  # the client goes away
        left = time.monotonic()

        async def freed() -> bool:
            return total(await neuron_metrics(s, n1), "neuron_in_flight", model="slow") == 0

        await eventually(freed, "the neuron to free the slot", bound_s=3, step_s=0.02)
        assert time.monotonic() - left < 1.5
        await asyncio.sleep(0.5)  # had it kept generating, tokens would keep counting
        samples = await neuron_metrics(s, n1)
        assert total(samples, "neuron_completion_tokens_total", model="slow") < 20
        await settled(s, cluster)


async def test_gateway_drains_streams_on_sigterm_and_exits_zero(cluster: Cluster) -> None:
    """On SIGTERM the gateway refuses new connections, lets a stream finish, exits 0;
    the neuron then unloads its models and exits 0 within its bound."""
    cluster.start()
    assert cluster.gateway is not None
    async with aiohttp.ClientSession() as s:
        await admin_load(s, cluster, "slow", "n1")
        words = " ".join(f"w{i}" for i in range(25))  # 2.5 s of stream
        async with open_stream(s, cluster, "slow", text=words) as r:
            cluster.gateway.send(signal.SIGTERM)
            await asyncio.sleep(0.3)
            with pytest.raises(aiohttp.ClientConnectionError):
                async with aiohttp.ClientSession() as fresh:
                    await fresh.get(cluster.url + "/health", timeout=bounded(3))
            rest = await rest_of(r)
        assert "w24" in rest and "data: [DONE]" in rest
    assert await asyncio.to_thread(cluster.gateway.wait, 10) == 0
    started = time.monotonic()
    assert await asyncio.to_thread(cluster.stop_neuron, "n1") == 0
    assert time.monotonic() - started < 15
    assert "unloaded slow" in (cluster.tmp / "n1.log").read_text()


LIAR = ("-m", "tests.reliability.liar", "neuron")


async def _recorder(host: str, seen: list[dict[str, str]]) -> web.AppRunner:
    """A server outside the fleet that answers like a neuron and records each request."""

    async def answer(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        body = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "elsewhere"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    return runner


async def test_endpoint_outside_the_fleet_is_followed_only_when_trusted(cluster: Cluster) -> None:
    """A neuron naming a host that is neither loopback nor a configured neuron gets a 502,
    and nothing is sent there, unless trust_neuron_urls is set."""
    seen: list[dict[str, str]] = []
    outside = cluster.client.addr_a  # this namespace's end of the client link
    runner = await _recorder(outside, seen)
    try:
        port = runner.addresses[0][1]
        cluster.start_neuron("n1", LIAR, env={"LIAR_URL": f"http://{outside}:{port}"})
        cluster.start_gateway()
        async with aiohttp.ClientSession() as s:
            await admin_load(s, cluster, "m", "n1")
            status, body = await chat(s, cluster, "m")
            assert status == 502, body
            assert "outside the fleet" in body and seen == []
        assert cluster.gateway is not None and cluster.gateway.stop() == 0
        cluster.gateway_options["trust_neuron_urls"] = True
        cluster.start_gateway()
        async with aiohttp.ClientSession() as s:
            status, body = await chat(s, cluster, "m")
            assert status == 200 and "elsewhere" in body, body
        assert len(seen) == 1 and seen[0]["Authorization"] == f"Bearer {cluster.neuron_token}"
    finally:
        await runner.cleanup()
