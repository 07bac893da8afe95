"""A client that leaves mid-stream stops the real ONNX decode loop, through the gateway."""

from __future__ import annotations

import asyncio
import os

from tests.fleet import REPO, http, start_gateway, start_neuron

TINY = '[[models]]\nid = "tiny"\nsource = "tiny-chat"\nharness = "onnx"\nvram_mb = 64\n'
MAX_TOKENS = 2000  # left alone, this prompt runs to the limit (no EOS)


def _completion_tokens(neuron_metrics: object) -> float:
    families = neuron_metrics.completion_tokens.collect()
    return sum(s.value for f in families for s in f.samples if s.name.endswith("_total"))


async def test_disconnect_stops_onnx_generation_and_frees_the_slot() -> None:
    """The neuron stops decoding soon after the client goes, and its slot is free again."""
    models = os.path.join(REPO, "models")
    async with start_neuron(models_dir=models, default_harness="onnx") as neuron:
        async with start_gateway([neuron], TINY) as gw, http() as session:
            body = {
                "model": "tiny",
                "stream": True,
                "max_tokens": MAX_TOKENS,
                "messages": [{"role": "user", "content": "Tell me everything."}],
            }
            async with session.post(gw.url + "/v1/chat/completions", json=body) as r:
                seen = 0
                async for line in r.content:
                    seen += line.startswith(b'data: {"id"') and b'"content":"' in line
                    if seen >= 3:
                        break
            slot = neuron.state.registry.slots["tiny"]
            for _ in range(200):
                if slot.in_flight == 0:
                    break
                await asyncio.sleep(0.01)
            generated = _completion_tokens(neuron.state.metrics)
    assert slot.in_flight == 0
    assert 0 < generated < MAX_TOKENS
