"""The gateway's /metrics after real requests through a real gateway and echo neuron."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from cortex.cli.status import last_minute_table
from cortex.gateway.metrics import DURATION_BUCKETS, TPS_BUCKETS, TTFT_BUCKETS, GatewayMetrics
from cortex.harness import LoadSpec
from cortex.logs import JsonFormatter
from harnesses.cortex_echo import EchoHarness, EchoModel
from tests.fleet import REPO, http, local_fleet

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "one two three"}]}
MESSAGES = {
    "model": "echo",
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "one two three"}],
}
LOAD_S = 0.3


class SlowLoadEcho(EchoHarness):
    """The echo harness with a load that takes LOAD_S, so a cold start is measurable."""

    name = "slowecho"

    async def load(self, spec: LoadSpec) -> EchoModel:
        await asyncio.sleep(LOAD_S)
        return EchoModel(spec)


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return {f.name: f for f in text_string_to_metric_families(text)}


def series(families: dict[str, Any], name: str, **labels: str) -> list[Sample]:
    """Samples named ``name`` whose labels include ``labels``."""
    family = families[re.sub(r"(_total|_bucket|_sum|_count)$", "", name)]
    return [
        s
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    found = series(families, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return float(found[0].value)


def bounds(families: dict[str, Any], name: str) -> list[float]:
    les = {float(s.labels["le"]) for s in series(families, name + "_bucket")}
    return sorted(les)


async def chat(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> int:
    async with session.post(url + "/v1/chat/completions", json=body) as r:
        await r.read()
        return r.status


@contextmanager
def captured(*names: str) -> Iterator[list[dict[str, Any]]]:
    """Records of the named loggers, each formatted by the JSON formatter and parsed back."""
    lines: list[dict[str, Any]] = []
    formatter = JsonFormatter()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(formatter.format(record)))

    handler = Keep()
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


async def test_series_labels_and_buckets_follow_the_spec() -> None:
    """Requests of every kind land in SPEC 6's series with its labels and bucket bounds."""
    async with local_fleet(vram_mb=(1000,)) as (gw, _), http() as session:
        assert await chat(session, gw.url, CHAT) == 200  # cold
        assert await chat(session, gw.url, {**CHAT, "stream": True}) == 200
        async with session.post(gw.url + "/v1/messages", json=MESSAGES) as r:
            assert r.status == 200, await r.text()
        async with session.post(gw.url + "/v1/messages", json={**MESSAGES, "stream": True}) as r:
            assert r.status == 200
            await r.read()
        assert await chat(session, gw.url, {**CHAT, "model": "gpt-9"}) == 404
        assert await chat(session, gw.url, {**CHAT, "n": 2}) == 400
        async with session.post(gw.url + "/v1/chat/completions", data=b"{nope") as r:
            assert r.status == 400
        await gw.poll()
        m = await scrape(session, gw.metrics_url)

    ok = {"model": "echo", "node": "n1"}
    assert value(m, "cortex_requests_total", **ok, api="openai", code="200") == 2
    assert value(m, "cortex_requests_total", **ok, api="anthropic", code="200") == 2
    assert value(m, "cortex_requests_total", model="", node="", api="openai", code="404") == 1
    # n=2 is refused by the neuron after routing: the model is known, so it keeps its label.
    assert value(m, "cortex_requests_total", **ok, api="openai", code="400") == 1
    assert value(m, "cortex_requests_total", model="", node="", api="openai", code="400") == 1
    assert value(m, "cortex_request_errors_total", model="", node="", kind="not_found") == 1
    assert value(m, "cortex_request_errors_total", **ok, kind="bad_request") == 1
    assert value(m, "cortex_cold_starts_total", **ok) == 1
    assert value(m, "cortex_prompt_tokens_total", **ok) == 12
    assert value(m, "cortex_completion_tokens_total", **ok) == 12
    assert {s.labels["model"] for s in m["cortex_requests"].samples} == {"echo", ""}

    histograms = {
        "cortex_request_duration_seconds": DURATION_BUCKETS,
        "cortex_time_to_first_token_seconds": TTFT_BUCKETS,
        "cortex_queue_seconds": TTFT_BUCKETS,
        "cortex_model_load_seconds": TTFT_BUCKETS,
        "cortex_prefill_seconds": TTFT_BUCKETS,
        "cortex_tokens_per_second": TPS_BUCKETS,
    }
    for name, buckets in histograms.items():
        assert m[name].type == "histogram", name
        assert bounds(m, name) == [*map(float, buckets), float("inf")], name
    assert bounds(m, "cortex_request_duration_seconds")[0] == 0.1
    assert bounds(m, "cortex_request_duration_seconds")[-2] == 1200
    assert bounds(m, "cortex_time_to_first_token_seconds")[-2] == 120
    assert bounds(m, "cortex_tokens_per_second")[0] == 1
    assert bounds(m, "cortex_tokens_per_second")[-2] == 200
    assert value(m, "cortex_request_duration_seconds_count", **ok) == 5
    # The four answered requests each observe TTFT and all three of its parts.
    for name in ("time_to_first_token", "queue", "model_load", "prefill"):
        assert value(m, f"cortex_{name}_seconds_count", **ok) == 4, name

    assert value(m, "cortex_in_flight", **ok) == 0
    assert value(m, "cortex_queued", **ok) == 0
    assert value(m, "cortex_model_loaded", **ok) == 1
    assert value(m, "cortex_node_up", node="n1") == 1
    assert value(m, "cortex_device_vram_used_mb", node="n1", device="0") == 100
    assert value(m, "cortex_device_vram_free_mb", node="n1", device="0") == 900


async def test_ttft_parts_add_up_to_the_whole() -> None:
    """Queue, load and prefill sum to time to first token, each part non-trivial."""
    models = (
        '[[models]]\nid = "slow"\nharness = "slowecho"\nmax_concurrency = 1\n'
        "options = {delay_ms = 100}\n"
    )
    body = {**CHAT, "model": "slow", "stream": True}
    async with local_fleet(models) as (gw, neuron), http() as session:
        neuron.state.registry.harnesses.add("slowecho", SlowLoadEcho())
        await gw.poll()
        statuses = await asyncio.gather(*(chat(session, gw.url, body) for _ in range(3)))
        m = await scrape(session, gw.metrics_url)
    assert statuses == [200] * 3
    labels = {"model": "slow", "node": "n1"}
    sums = {
        part: value(m, f"cortex_{part}_seconds_sum", **labels)
        for part in ("time_to_first_token", "queue", "model_load", "prefill")
    }
    counts = {
        part: value(m, f"cortex_{part}_seconds_count", **labels)
        for part in ("time_to_first_token", "queue", "model_load", "prefill")
    }
    assert set(counts.values()) == {3}
    whole = sums.pop("time_to_first_token")
    assert abs(sum(sums.values()) - whole) < 1e-6, sums
    assert sums["model_load"] >= 3 * LOAD_S * 0.9  # all three waited on the one load
    assert sums["queue"] >= 0.25 * 3  # one slot: the 2nd and 3rd waited for whole answers
    assert sums["prefill"] >= 3 * 0.09  # the echo pauses before its first word
    assert value(m, "cortex_cold_starts_total", **labels) == 3
    assert value(m, "cortex_tokens_per_second_count", **labels) == 3


async def test_a_client_that_leaves_mid_stream_is_recorded() -> None:
    """A stream cut by its client counts as 499 with the tokens it was delivered."""
    models = '[[models]]\nid = "slow"\nharness = "echo"\noptions = {delay_ms = 50}\n'
    words = " ".join(f"w{i}" for i in range(40))
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": words}]}
    async with local_fleet(models) as (gw, _), http() as session:
        with captured("cortex.gateway.requests") as lines:
            r = await session.post(gw.url + "/v1/chat/completions", json=body)
            seen = 0
            async for line in r.content:
                seen += line.startswith(b'data: {"') and b'"content":"w' in line
                if seen == 5:
                    break
            r.close()
            for _ in range(100):
                if lines:
                    break
                await asyncio.sleep(0.05)
        m = await scrape(session, gw.metrics_url)
    labels = {"model": "slow", "node": "n1"}
    assert value(m, "cortex_requests_total", **labels, api="openai", code="499") == 1
    assert value(m, "cortex_request_errors_total", **labels, kind="client_gone") == 1
    assert value(m, "cortex_prompt_tokens_total", **labels) == 40
    assert 5 <= value(m, "cortex_completion_tokens_total", **labels) < 40
    assert value(m, "cortex_time_to_first_token_seconds_count", **labels) == 1
    assert lines[0]["status"] == 499 and 5 <= lines[0]["completion_tokens"] < 40


async def test_request_line_is_json_and_the_request_id_reaches_the_neuron() -> None:
    """One JSON line per request; the client's id comes back and appears in the neuron's line."""
    async with local_fleet() as (gw, _), http() as session:
        with captured("cortex.gateway.requests", "cortex.neuron.requests") as lines:
            headers = {"x-request-id": "trace-42"}
            body = {**CHAT, "stream": True}
            async with session.post(
                gw.url + "/v1/chat/completions", json=body, headers=headers
            ) as r:
                await r.read()
                assert r.headers["x-request-id"] == "trace-42"
            async with session.post(gw.url + "/v1/chat/completions", json=CHAT) as r:
                generated = r.headers["x-request-id"]
            async with session.post(
                gw.url + "/v1/messages", json={**MESSAGES, "stream": True}
            ) as r:
                await r.read()
                assert r.headers["x-request-id"].startswith("req_")
    gateway = [line for line in lines if line["logger"] == "cortex.gateway.requests"]
    neuron = [line for line in lines if line["logger"] == "cortex.neuron.requests"]
    assert len(gateway) == 3 and len(neuron) == 3
    first = gateway[0]
    assert first["msg"] == "request" and first["request_id"] == "trace-42"
    assert {k: first[k] for k in ("model", "node", "api", "status")} == {
        "model": "echo",
        "node": "n1",
        "api": "openai",
        "status": 200,
    }
    assert first["prompt_tokens"] == 3 and first["completion_tokens"] == 3
    parts = first["queue_s"] + first["load_s"] + first["prefill_s"]
    assert abs(parts - first["ttft_s"]) < 1e-3
    assert first["duration_s"] >= first["ttft_s"]
    assert [n["request_id"] for n in neuron] == ["trace-42", generated, gateway[2]["request_id"]]
    assert gateway[1]["request_id"] == generated and gateway[2]["api"] == "anthropic"


async def test_an_unfit_client_request_id_is_replaced() -> None:
    """A client x-request-id that is too long or has control characters gets a fresh id."""
    async with local_fleet() as (gw, _), http() as session:
        for given in ("x" * 300, "a\tb"):
            headers = {"x-request-id": given}
            async with session.post(
                gw.url + "/v1/chat/completions", json=CHAT, headers=headers
            ) as r:
                assert r.status == 200
                assert r.headers["x-request-id"].startswith("req_")


async def test_admin_stats_reports_the_last_minute_per_model() -> None:
    """GET /admin/stats counts the last minute's requests, TTFT p50 and tok/s per model."""
    async with local_fleet() as (gw, _), http() as session:
        for _ in range(3):
            assert await chat(session, gw.url, {**CHAT, "stream": True}) == 200
        assert await chat(session, gw.url, {**CHAT, "model": "nope"}) == 404
        async with session.get(gw.url + "/admin/stats") as r:
            stats = await r.json()
    assert stats["window_s"] == 60
    echo = stats["models"]["echo"]
    assert echo["requests"] == 3 and echo["errors"] == 0
    assert echo["ttft_p50_s"] > 0 and echo["decode_tokens_per_second_p50"] > 0
    assert stats["models"][""]["errors"] == 1
    text = last_minute_table(stats) or ""
    assert text.startswith("LAST MINUTE") and "(unknown)" in text
    assert re.search(r"^echo +3 +0 +\d+\.\d{3}s", text, re.MULTILINE), text


def _exported(families: dict[str, Any]) -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {f.name + s for f in families.values() for s in suffixes.get(f.type, ("",))}


def dashboard_exprs() -> list[str]:
    """Every ``expr`` anywhere in dashboards/cortex.json (which must be valid JSON)."""
    with open(os.path.join(REPO, "dashboards", "cortex.json")) as f:
        dashboard = json.load(f)
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(dashboard)
    return exprs


async def test_dashboard_queries_only_exported_metrics() -> None:
    """Every PromQL expression in the Grafana dashboard names a metric that is exported."""
    exprs = dashboard_exprs()
    async with local_fleet() as (gw, neuron), http() as session:
        assert await chat(session, gw.url, {**CHAT, "stream": True}) == 200
        families = await scrape(session, gw.metrics_url)
        families |= await scrape(session, neuron.url)
    exported = _exported(families)
    used = {name for e in exprs for name in re.findall(r"\b(?:cortex|neuron)_[a-z_]+\b", e)}
    assert len(exprs) >= 12 and used
    assert used <= exported, used - exported
    gateway = {f.name for f in GatewayMetrics().registry.collect()}
    assert _exported({k: v for k, v in families.items() if k in gateway}) & used
