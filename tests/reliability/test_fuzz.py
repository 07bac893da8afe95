"""Generated bodies, headers and paths against every gateway and neuron route.

The servers run in the test's event loop; hypothesis drives them from a worker thread
over plain ``http.client``, so each example is one real HTTP request. No answer may be
a 5xx other than the documented upstream ones, and none may carry a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client as httpclient
import importlib
import json
from typing import Any
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fleet import http, local_fleet

ALLOWED_5XX = {502, 503, 504, 507}
EXAMPLES = 150
KEYS = st.sampled_from(
    ["model", "messages", "stream", "max_tokens", "role", "content", "tools", "tool_choice",
     "stop", "n", "input", "prompt", "system", "model_id", "source", "harness", "options",
     "type", "text", "stream_options", "temperature", "devices", "node", "tool_use_id"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False),
    st.text(max_size=20), st.sampled_from(["echo", "user", "assistant", "tool", "text", "../x"]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
BODIES = st.one_of(
    st.dictionaries(KEYS, VALUES, max_size=6).map(lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries(
        {
            "model": st.sampled_from(["echo", "parrot", "nope", ""]),
            "messages": st.lists(st.dictionaries(KEYS, VALUES, max_size=3), max_size=3),
        },
        optional={"stream": st.booleans(), "max_tokens": SCALARS},
    ).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=200),
)
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
HEADERS = st.dictionaries(
    st.sampled_from(["x-request-id", "anthropic-version", "content-type", "x-api-key", "accept"]),
    HEADER_TEXT,
    max_size=3,
)
SEGMENT = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="#?"), max_size=12
)

GATEWAY_POSTS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages",
                 "/v1/messages/count_tokens", "/admin/load", "/admin/unload"]  # fmt: skip
GATEWAY_GETS = ["/v1/models", "/v1/models/", "/health", "/admin/stats", "/v1/responses/", "/"]
NEURON_POSTS = ["/models/load", "/models/unload", "/tokenize", "/v1/chat/completions",
                "/v1/completions", "/v1/embeddings"]  # fmt: skip
NEURON_GETS = ["/discovery", "/health", "/models", "/metrics", "/models/", "/"]


def send(base: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    """One request; asserts on the answer; returns its status."""
    parts = urlsplit(base)
    conn = httpclient.HTTPConnection(parts.hostname or "", parts.port, timeout=20)
    try:
        conn.request(method, path, body=body if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    assert response.status < 500 or response.status in ALLOWED_5XX, (path, response.status, data)
    assert b"Traceback" not in data, data[:500]
    return response.status


def fuzz(base: str, posts: list[str], gets: list[str]) -> None:
    """Run the hypothesis examples for one server (blocking: call from a thread)."""

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(
        post=st.booleans(), index=st.integers(0, 99), tail=SEGMENT,
        body=BODIES, headers=HEADERS,
    )  # fmt: skip
    def one(post: bool, index: int, tail: str, body: bytes, headers: dict[str, str]) -> None:
        routes = posts if post else gets
        path = routes[index % len(routes)]
        if path.endswith("/") and path != "/":
            path += tail + ("/endpoint" if path == "/models/" and index % 2 else "")
        send(base, "POST" if post else "GET", path, body, headers)

    one()


async def _after(base: str, path: str) -> None:
    async with http() as s, s.get(base + path) as r:
        assert r.status == 200


async def test_gateway_and_neuron_routes_survive_generated_requests() -> None:
    """Every route answers generated input with a 4xx or a documented upstream status,
    never a traceback, and still serves afterwards."""
    # hypothesis (in our thread) and the neuron's provider probe (in another) both import
    # numpy lazily; importing it here first avoids a race on a half-initialised module.
    with contextlib.suppress(ImportError):
        importlib.import_module("numpy")
    async with local_fleet() as (gw, neuron):
        await asyncio.to_thread(fuzz, gw.url, GATEWAY_POSTS, GATEWAY_GETS)
        await asyncio.to_thread(fuzz, neuron.url, NEURON_POSTS, NEURON_GETS)
        await _after(gw.url, "/health")
        await _after(neuron.url, "/health")
        async with http() as s:
            body: dict[str, Any] = {
                "model": "echo",
                "messages": [{"role": "user", "content": "ok"}],
            }
            async with s.post(gw.url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200, await r.text()
