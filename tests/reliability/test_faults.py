"""Faults across namespaces: neurons killed, frozen, partitioned and restarted."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import aiohttp
import pytest

from tests.reliability.cluster import NEURON_TOKEN, Cluster
from tests.reliability.watch import (
    admin_load,
    bounded,
    chat,
    eventually,
    loads,
    node_up,
    open_stream,
    rest_of,
    settled,
    stream_failed,
    stream_ok,
)

pytestmark = pytest.mark.netns


async def test_refused_connection_is_retried_once_on_another_node(cluster: Cluster) -> None:
    """Requests to a killed neuron the gateway still thinks up are served by another node."""
    cluster.gateway_options["poll_interval_s"] = 60  # no poll notices the death
    cluster.start()
    async with aiohttp.ClientSession() as s:
        for node in ("n1", "n2"):
            await admin_load(s, cluster, "m", node)
        cluster.stop_neuron("n1", signal.SIGKILL)
        results = await asyncio.gather(
            chat(s, cluster, "m"),
            chat(s, cluster, "m", anthropic=True),
            chat(s, cluster, "m", stream=True),
            chat(s, cluster, "m", stream=True, anthropic=True),
        )
        assert results[0][0] == 200 and results[1][0] == 200, results
        assert all(stream_ok(*r) for r in results[2:]), results
        assert "trying another node" in (cluster.tmp / "gateway.log").read_text()
        assert await loads(s, cluster.neurons["n2"], "m") == 1
        await settled(s, cluster)


async def test_neuron_killed_mid_stream_ends_each_stream_with_an_error(cluster: Cluster) -> None:
    """A neuron dying mid-stream ends OpenAI and Anthropic streams with an error frame."""
    cluster.start()
    async with aiohttp.ClientSession() as s:
        await admin_load(s, cluster, "slow", "n1")
        async with (
            open_stream(s, cluster, "slow") as openai,
            open_stream(s, cluster, "slow", anthropic=True) as anthropic,
        ):
            cluster.stop_neuron("n1", signal.SIGKILL)
            cut_openai, cut_anthropic = await rest_of(openai), await rest_of(anthropic)
        assert stream_failed(200, cut_openai) and "[DONE]" not in cut_openai, cut_openai
        assert "event: error" in cut_anthropic and "message_stop" not in cut_anthropic
        await eventually(lambda: _down(s, cluster, "n1"), "n1 to leave routing")
        await settled(s, cluster)
        cluster.start_neuron("n1")  # it comes back empty, and is used again
        await eventually(lambda: node_up(s, cluster, "n1"), "n1 to return")
        await admin_load(s, cluster, "slow", "n1")
        assert await loads(s, cluster.neurons["n1"], "slow") == 1


async def _down(s: aiohttp.ClientSession, cluster: Cluster, node: str) -> bool:
    return not await node_up(s, cluster, node)


async def test_frozen_neuron_is_cut_by_the_idle_timeout_and_returns(cluster: Cluster) -> None:
    """A stream from a SIGSTOPped neuron ends in an error after stream_idle_timeout_s; after
    SIGCONT the node rejoins and nothing is leaked."""
    cluster.start()
    async with aiohttp.ClientSession() as s:
        await admin_load(s, cluster, "slow", "n1")
        await admin_load(s, cluster, "m", "n2")
        n1 = cluster.neurons["n1"]
        assert n1.proc is not None
        async with open_stream(s, cluster, "slow") as r:
            n1.proc.send(signal.SIGSTOP)
            started = time.monotonic()
            cut = await rest_of(r)
        assert time.monotonic() - started < 2 + 3  # stream_idle_timeout_s plus slack
        assert stream_failed(200, cut) and "timeout" in cut, cut
        await eventually(lambda: _down(s, cluster, "n1"), "the frozen n1 to leave routing")
        status, body = await chat(s, cluster, "m", stream=True)
        assert stream_ok(status, body)
        n1.proc.send(signal.SIGCONT)
        await eventually(lambda: node_up(s, cluster, "n1"), "n1 to rejoin")
        status, body = await chat(s, cluster, "slow", text="a b")
        assert status == 200, body
        await settled(s, cluster)


async def test_non_streamed_answers_wait_for_a_live_neuron_and_not_for_a_frozen_one(
    cluster: Cluster,
) -> None:
    """A 6 s non-streamed answer outlives the 2 s idle timeout while the neuron is alive;
    from a SIGSTOPped neuron the client gets a 504 soon after that timeout."""
    cluster.start()
    async with aiohttp.ClientSession() as s:
        await admin_load(s, cluster, "slow", "n1")
        status, body = await chat(s, cluster, "slow", text=" ".join(f"w{i}" for i in range(60)))
        assert status == 200 and "w59" in body, body
        n1 = cluster.neurons["n1"]
        assert n1.proc is not None
        asking = asyncio.ensure_future(chat(s, cluster, "slow", text="a b c d e f g h i j"))
        await asyncio.sleep(0.3)
        n1.proc.send(signal.SIGSTOP)
        started = time.monotonic()
        status, body = await asking
        assert time.monotonic() - started < 2 + 2 + 3  # idle timeout, probe, slack
        assert status == 504 and json.loads(body)["error"]["type"] == "timeout_error", body
        n1.proc.send(signal.SIGCONT)
        await eventually(lambda: node_up(s, cluster, "n1"), "n1 to rejoin")
        await settled(s, cluster)


async def test_a_stream_that_keeps_sending_is_never_cut(cluster: Cluster) -> None:
    """A 6 s stream with a word every 100 ms outlives a 2 s idle timeout in both dialects."""
    cluster.start()
    async with aiohttp.ClientSession() as s:
        await admin_load(s, cluster, "slow", "n1")
        async with (
            open_stream(s, cluster, "slow") as openai,
            open_stream(s, cluster, "slow", anthropic=True) as anthropic,
        ):
            whole = await asyncio.gather(rest_of(openai), rest_of(anthropic))
        assert "w59" in whole[0] and "data: [DONE]" in whole[0]
        assert "w59" in whole[1] and "event: message_stop" in whole[1]


async def test_partition_takes_the_node_out_of_routing_until_it_heals(cluster: Cluster) -> None:
    """With its link down a node leaves routing after the debounce, every request still ends,
    and once the link is back the node serves again."""
    cluster.start()
    async with aiohttp.ClientSession() as s:
        for node in ("n1", "n2"):
            await admin_load(s, cluster, "m", node)
        n1 = cluster.neurons["n1"]
        cluster.bed.set_up(n1.data, False)
        during = await asyncio.gather(
            *(chat(s, cluster, "m", stream=True, bound_s=10) for _ in range(4))
        )
        assert all(stream_ok(*r) or stream_failed(*r) for r in during), during
        await eventually(lambda: _down(s, cluster, "n1"), "n1 to leave routing")
        after = await asyncio.gather(*(chat(s, cluster, "m", stream=True) for _ in range(4)))
        assert all(stream_ok(*r) for r in after), after
        cluster.bed.set_up(n1.data, True)
        await eventually(lambda: node_up(s, cluster, "n1"), "n1 to heal")
        await settled(s, cluster)
        assert await loads(s, n1, "m") == 1  # healed with its model, not reloaded


async def test_restarted_neuron_with_other_models_is_followed(cluster: Cluster) -> None:
    """A neuron restarted with a different model loaded: the gateway's view follows it."""
    cluster.start()
    async with aiohttp.ClientSession() as s:
        await admin_load(s, cluster, "m", "n1")
        cluster.stop_neuron("n1")
        n1 = cluster.start_neuron("n1")
        headers = {"Authorization": f"Bearer {NEURON_TOKEN}"}
        load = {"model_id": "slow", "harness": "echo", "options": {"vram_mb": 100}}
        async with s.post(
            n1.watch_url + "/models/load", json=load, headers=headers, timeout=bounded()
        ) as r:
            assert r.status == 200, await r.text()

        async def followed() -> bool:
            async with s.get(cluster.url + "/v1/models", timeout=bounded(5)) as r:
                models = {m["id"]: m for m in (await r.json())["data"]}
            where = {k: {loc["node"] for loc in v["locations"]} for k, v in models.items()}
            return "n1" in where.get("slow", set()) and "n1" not in where.get("m", set())

        await eventually(followed, "the gateway to see n1's new models")
        status, body = await chat(s, cluster, "slow", text="a b")
        assert status == 200, body
        assert await loads(s, n1, "slow") == 1
        await settled(s, cluster)


async def test_restarted_gateway_rebuilds_its_state_without_reloading(cluster: Cluster) -> None:
    """A gateway restarted while neurons keep their models serves them with no new load."""
    cluster.start()
    async with aiohttp.ClientSession() as s:
        await admin_load(s, cluster, "m", "n1")
        await admin_load(s, cluster, "slow", "n2")
        assert cluster.gateway is not None
        assert cluster.gateway.stop() == 0
        cluster.start_gateway()
    async with aiohttp.ClientSession() as s:  # the old keep-alive connections died with it
        for model in ("m", "slow"):
            status, body = await chat(s, cluster, model, text="a b")
            assert status == 200, body
        n1, n2 = cluster.neurons["n1"], cluster.neurons["n2"]
        assert (await loads(s, n1, "m"), await loads(s, n2, "slow")) == (1, 1)
        assert (await loads(s, n1, "slow"), await loads(s, n2, "m")) == (0, 0)
        await settled(s, cluster)


async def test_loopback_endpoint_is_reached_by_the_namespace_address(cluster: Cluster) -> None:
    """A neuron reports localhost; the gateway reaches it by its configured address."""
    cluster.start()
    async with aiohttp.ClientSession() as s:
        await admin_load(s, cluster, "m", "n1")
        headers = {"Authorization": f"Bearer {NEURON_TOKEN}"}
        n1 = cluster.neurons["n1"]
        async with s.get(n1.watch_url + "/models/m/endpoint", headers=headers) as r:
            assert json.loads(await r.text()) == {"url": "http://localhost:13131"}
        status, body = await chat(s, cluster, "m")
        assert status == 200, body
        assert json.loads(body)["choices"][0]["message"]["content"] == "one two three"
