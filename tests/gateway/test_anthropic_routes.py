"""The Anthropic routes' choices that the SDK tests cannot see: tokenizer node, metrics."""

from __future__ import annotations

import attrs
import pytest

from cortex.errors import NotFound, Unavailable
from cortex.gateway.anthropic_routes import tokenizer_node
from tests.fleet import http, local_fleet, start_gateway, start_neuron

MODELS = '[[models]]\nid = "echo"\nharness = "echo"\nvram_mb = 100\n'
HI = {"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": "one two"}]}


async def test_tokenizer_node_prefers_where_the_model_is_loaded() -> None:
    """count_tokens goes to a node that has the model loaded, else any feasible healthy one."""
    async with (
        start_neuron("n1", vram_mb=(50,)) as small,
        start_neuron("n2", vram_mb=(1000,)) as big,
        start_gateway([small, big], MODELS) as gw,
        http() as session,
    ):
        assert tokenizer_node(gw.state, "echo")[1] == "n1"  # nothing loaded: the first feasible
        async with session.post(gw.url + "/v1/messages", json=HI) as r:
            assert r.status == 200  # loads on n2, the only node it fits
        await gw.poll()
        profile, node = tokenizer_node(gw.state, "echo")
        assert (profile.id, node) == ("echo", "n2")
        with pytest.raises(NotFound):
            tokenizer_node(gw.state, "nope")
        store = gw.state.store
        for name in ("n1", "n2"):
            store.update(name, lambda n: attrs.evolve(n, healthy=False))
        with pytest.raises(Unavailable):
            tokenizer_node(gw.state, "echo")


async def test_messages_requests_feed_the_gateway_metrics() -> None:
    """Streamed and whole Messages requests count tokens under api="anthropic"."""
    async with local_fleet() as (gw, _), http() as session:
        for stream in (False, True):
            async with session.post(gw.url + "/v1/messages", json={**HI, "stream": stream}) as r:
                assert r.status == 200
                await r.read()
        async with session.get(gw.metrics_url + "/metrics") as r:
            text = await r.text()
    assert 'cortex_requests_total{api="anthropic",code="200",model="echo",node="n1"} 2.0' in text
    assert 'cortex_completion_tokens_total{model="echo",node="n1"} 4.0' in text
    assert 'cortex_prompt_tokens_total{model="echo",node="n1"} 4.0' in text
