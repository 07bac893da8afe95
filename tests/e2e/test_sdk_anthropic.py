"""The official anthropic SDK against a real gateway and a real echo neuron on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from anthropic import NOT_GIVEN, AsyncAnthropic

from tests.fleet import RunningGateway, RunningNeuron, http, kill_connections, local_fleet

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
ASK_WEATHER = '@@tool:get_weather:{"city":"Paris"}@@'
PING_BODY = {
    "max_tokens": 8,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}
SLOW = (
    '[[models]]\nid = "slow"\nharness = "echo"\nmax_concurrency = 1\noptions = {delay_ms = 100}\n'
)


def client(gw: RunningGateway, api_key: str = "test", **kwargs: Any) -> AsyncAnthropic:
    return AsyncAnthropic(base_url=gw.url, api_key=api_key, max_retries=0, **kwargs)


@contextlib.asynccontextmanager
async def anthropic_fleet(
    models_toml: str | None = None, **gateway: Any
) -> AsyncIterator[tuple[RunningGateway, RunningNeuron, AsyncAnthropic]]:
    fleet = local_fleet(models_toml, **gateway) if models_toml else local_fleet(**gateway)
    async with fleet as (gw, neuron):
        sdk = client(gw)
        try:
            yield gw, neuron, sdk
        finally:
            await sdk.close()


async def stream_and_kill(sdk: AsyncAnthropic, neuron: RunningNeuron) -> None:
    """Stream a long answer and kill the neuron's connections at its first text."""
    async with sdk.messages.stream(
        model="slow", max_tokens=64, messages=[{"role": "user", "content": "a b c d e f g h"}]
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta":
                kill_connections(neuron)


async def test_message_round_trips() -> None:
    """A plain message comes back as an Anthropic message with text, usage and a msg_ id."""
    async with anthropic_fleet() as (_, _, sdk):
        message = await sdk.messages.create(
            model="echo", max_tokens=64, messages=[{"role": "user", "content": "one two three"}]
        )
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == "echo"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "one two three"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == 3 and message.usage.output_tokens == 3


async def test_alias_answers_with_the_name_the_client_asked_for() -> None:
    """An alias reaches its model, and the message names the alias the client sent."""
    async with anthropic_fleet() as (_, _, sdk):
        message = await sdk.messages.create(
            model="parrot", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert message.model == "parrot" and message.content[0].text == "hi"


async def test_stream_helper_yields_text_and_final_message() -> None:
    """messages.stream() yields the words as text and a complete final message."""
    async with anthropic_fleet() as (_, _, sdk):
        async with sdk.messages.stream(
            model="echo", max_tokens=64, messages=[{"role": "user", "content": "one two three"}]
        ) as stream:
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
    assert pieces == ["one ", "two ", "three"]
    assert final.content[0].text == "one two three"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 3 and final.usage.output_tokens == 3


async def test_raw_stream_yields_every_event_type_in_order() -> None:
    """stream=True yields message_start, one text block, message_delta and message_stop."""
    async with anthropic_fleet() as (_, _, sdk):
        stream = await sdk.messages.create(
            model="echo",
            max_tokens=64,
            stream=True,
            messages=[{"role": "user", "content": "one two three"}],
        )
        events = [event async for event in stream if event.type != "ping"]
    types = [event.type for event in events]
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]
    assert start.type == "message_start" and start.message.usage.input_tokens == 3
    delta = events[-2]
    assert delta.type == "message_delta" and delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 3


async def test_tool_use_across_two_turns() -> None:
    """A tool call arrives as a tool_use block; its result comes back in the next turn."""
    async with anthropic_fleet() as (_, _, sdk):
        first = await sdk.messages.create(
            model="echo",
            max_tokens=64,
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": ASK_WEATHER}],
        )
        assert first.stop_reason == "tool_use"
        (call,) = first.content
        assert call.type == "tool_use" and call.id
        assert call.name == "get_weather" and call.input == {"city": "Paris"}
        second = await sdk.messages.create(
            model="echo",
            max_tokens=64,
            tools=[WEATHER_TOOL],
            messages=[
                {"role": "user", "content": ASK_WEATHER},
                {"role": "assistant", "content": [call.model_dump()]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}
                    ],
                },
            ],
        )
    assert second.stop_reason == "end_turn"
    text = second.content[0].text
    assert "TOOL_RESULT_SEEN" in text and "sunny, 21C" in text


async def test_streamed_tool_use_has_id_and_parsed_input() -> None:
    """A streamed tool call accumulates into a tool_use block with its parsed input."""
    async with anthropic_fleet() as (_, _, sdk):
        async with sdk.messages.stream(
            model="echo",
            max_tokens=64,
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": ASK_WEATHER}],
        ) as stream:
            final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (call,) = final.content
    assert call.type == "tool_use" and call.id.startswith("call_")
    assert call.input == {"city": "Paris"}


async def test_system_prompts_in_every_shape_reach_the_model() -> None:
    """System text as a string, as blocks and as role-system turns is all carried."""
    async with anthropic_fleet() as (_, _, sdk):
        as_string = await sdk.messages.create(
            model="echo",
            max_tokens=8,
            system="be brief",
            messages=[{"role": "user", "content": "hi"}],
        )
        as_blocks = await sdk.messages.create(
            model="echo",
            max_tokens=8,
            system=[
                {"type": "text", "text": "be brief"},
                {"type": "text", "text": "and kind", "cache_control": {"type": "ephemeral"}},
            ],
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "really now"},
            ],
        )
    assert as_string.content[0].text == "hi"
    assert as_string.usage.input_tokens == 3  # the echo harness counts words, system included
    assert as_blocks.content[0].text == "hi"
    assert as_blocks.usage.input_tokens == 7


async def test_claude_code_shaped_request_is_accepted() -> None:
    """Claude Code's extra fields, betas, ?beta=true and a deferred empty-schema tool pass."""
    async with anthropic_fleet() as (_, _, sdk):
        message = await sdk.messages.create(
            model="echo",
            max_tokens=32,
            system=[
                {
                    "type": "text",
                    "text": "You are Claude Code.",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "say hi", "cache_control": {"type": "ephemeral"}}
                    ],
                },
                {"role": "system", "content": "reminder"},
            ],
            tools=[
                WEATHER_TOOL,
                {"name": "Later", "input_schema": {}, "defer_loading": True},
            ],
            metadata={"user_id": json.dumps({"device_id": "abc", "session_id": "s1"})},
            extra_body={
                "thinking": {"type": "adaptive"},
                "output_config": {"effort": "high"},
                "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
            },
            extra_headers={
                "anthropic-version": "2023-06-01",
                "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
            },
            extra_query={"beta": "true"},
        )
    assert message.content[0].text == "say hi"


async def test_stop_sequence_is_reported_with_the_matched_text() -> None:
    """A stop sequence ends the text before it and is named, streamed or not."""
    request: dict[str, Any] = {
        "model": "echo",
        "max_tokens": 64,
        "stop_sequences": ["never", "STOP"],
        "messages": [{"role": "user", "content": "alpha beta STOP gamma"}],
    }
    async with anthropic_fleet() as (_, _, sdk):
        whole = await sdk.messages.create(**request)
        async with sdk.messages.stream(**request) as stream:
            streamed = await stream.get_final_message()
    for message in (whole, streamed):
        assert message.stop_reason == "stop_sequence" and message.stop_sequence == "STOP"
        assert message.content[0].text == "alpha beta "


async def test_max_tokens_is_reported_as_the_stop_reason() -> None:
    """An answer cut by max_tokens ends with stop_reason max_tokens, streamed or not."""
    request: dict[str, Any] = {
        "model": "echo",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": "one two three four"}],
    }
    async with anthropic_fleet() as (_, _, sdk):
        whole = await sdk.messages.create(**request)
        async with sdk.messages.stream(**request) as stream:
            streamed = await stream.get_final_message()
    for message in (whole, streamed):
        assert message.stop_reason == "max_tokens"
        assert message.content[0].text == "one two "
        assert message.usage.output_tokens == 2


async def test_count_tokens_is_exact_without_loading_the_model() -> None:
    """count_tokens answers the neuron's exact count and leaves the model unloaded."""
    async with anthropic_fleet() as (gw, neuron, sdk):
        counted = await sdk.messages.count_tokens(
            model="parrot",
            system="be brief",
            messages=[{"role": "user", "content": "one two three"}],
        )
        with_tools = await sdk.messages.count_tokens(
            model="echo",
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "one two three"}],
        )
        loaded = neuron.state.registry.slots
        assert "echo" not in loaded
        with pytest.raises(anthropic.NotFoundError):
            await sdk.messages.count_tokens(
                model="nope", messages=[{"role": "user", "content": "x"}]
            )
        async with http() as session:
            async with session.post(
                gw.url + "/v1/messages/count_tokens?beta=true",
                json={"model": "echo", "messages": [{"role": "user", "content": "a b"}]},
            ) as r:
                assert await r.json() == {"input_tokens": 2}
    assert counted.input_tokens == 5
    assert with_tools.input_tokens > 3


async def test_count_tokens_needs_a_healthy_node() -> None:
    """count_tokens for a model no healthy node can host is a 503."""
    models = '[[models]]\nid = "far"\nharness = "echo"\npinned_on = ["elsewhere"]\n'
    async with anthropic_fleet(models) as (_, _, sdk):
        with pytest.raises(anthropic.InternalServerError) as caught:
            await sdk.messages.count_tokens(
                model="far", messages=[{"role": "user", "content": "x"}]
            )
    assert caught.value.status_code == 503


async def test_models_list_and_retrieve() -> None:
    """models.list() ends after one page and models.retrieve() resolves aliases."""
    async with anthropic_fleet() as (_, _, sdk):
        listed = [model async for model in sdk.models.list()]
        one = await sdk.models.retrieve("parrot")
        with pytest.raises(anthropic.NotFoundError):
            await sdk.models.retrieve("nope")
    assert [m.id for m in listed] == ["echo"]
    assert listed[0].type == "model" and listed[0].display_name == "echo"
    assert one.id == "echo"


async def test_errors_map_to_sdk_exception_classes() -> None:
    """400, 404 and 503 answers raise the SDK's matching exception classes."""
    models = '[[models]]\nid = "echo"\nharness = "echo"\n\n' + (
        '[[models]]\nid = "far"\nharness = "echo"\npinned_on = ["elsewhere"]\n'
    )
    hi = [{"role": "user", "content": "hi"}]
    async with anthropic_fleet(models) as (_, _, sdk):
        with pytest.raises(anthropic.BadRequestError) as bad:
            await sdk.messages.create(model="echo", max_tokens=NOT_GIVEN, messages=hi, timeout=30)
        with pytest.raises(anthropic.BadRequestError):
            await sdk.messages.create(
                model="echo",
                max_tokens=8,
                messages=[{"role": "robot", "content": "x"}],
            )
        with pytest.raises(anthropic.NotFoundError) as missing:
            await sdk.messages.create(model="gpt-9", max_tokens=8, messages=hi)
        with pytest.raises(anthropic.InternalServerError) as unavailable:
            await sdk.messages.create(model="far", max_tokens=8, messages=hi)
    assert "max_tokens" in bad.value.message
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    assert "gpt-9" in missing.value.message
    assert missing.value.body["error"]["type"] == "not_found_error"
    assert unavailable.value.status_code == 503
    assert unavailable.value.response.headers["retry-after"]


async def test_api_key_is_required_and_accepted_either_way() -> None:
    """With api_keys set, a wrong key is a 401; x-api-key and Bearer both pass."""
    hi = [{"role": "user", "content": "hi"}]
    async with anthropic_fleet(api_keys=("k1",)) as (gw, _, sdk):
        with pytest.raises(anthropic.AuthenticationError) as denied:
            await sdk.messages.create(model="echo", max_tokens=8, messages=hi)
        by_key = client(gw, api_key="k1")
        by_token = AsyncAnthropic(base_url=gw.url, auth_token="k1", max_retries=0)
        async with by_key, by_token:
            for sdk_ok in (by_key, by_token):
                message = await sdk_ok.messages.create(model="echo", max_tokens=8, messages=hi)
                assert message.content[0].text == "hi"
    assert denied.value.body["error"]["type"] == "authentication_error"


async def test_full_queue_raises_rate_limit_error() -> None:
    """A request beyond a full queue raises RateLimitError, with a retry hint."""
    async with anthropic_fleet(SLOW, max_queue_per_model=0) as (_, _, sdk):
        async with sdk.messages.stream(
            model="slow", max_tokens=64, messages=[{"role": "user", "content": "a b c d e f"}]
        ) as holding:
            async for event in holding:
                if event.type == "content_block_delta":
                    break  # admitted and generating: the one slot is taken
            with pytest.raises(anthropic.RateLimitError) as caught:
                await sdk.messages.create(
                    model="slow", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
                )
    assert caught.value.response.headers["retry-after"]
    assert caught.value.body["error"]["type"] == "rate_limit_error"


async def test_upstream_failure_mid_stream_raises_in_the_sdk() -> None:
    """A neuron that dies mid-stream makes the SDK's stream raise, not end quietly."""
    async with anthropic_fleet(SLOW) as (_, neuron, sdk):
        with pytest.raises(anthropic.APIError) as caught:
            await stream_and_kill(sdk, neuron)
    assert "mid-stream" in caught.value.message


async def test_upstream_failure_mid_stream_ends_with_an_error_frame() -> None:
    """The raw stream of a failed upstream ends with event: error and no message_stop."""
    body = {
        "model": "slow",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "a b c d e f g h"}],
    }
    async with anthropic_fleet(SLOW) as (gw, neuron, _), http() as session:
        async with session.post(gw.url + "/v1/messages?beta=true", json=body) as r:
            assert r.status == 200
            frames: list[str] = []
            buffer = b""
            async for chunk in r.content.iter_any():
                buffer += chunk
                while b"\n\n" in buffer:
                    frame, buffer = buffer.split(b"\n\n", 1)
                    frames.append(frame.decode())
                    if frame.startswith(b"event: content_block_delta"):
                        kill_connections(neuron)
    names = [f.split("\n", 1)[0].removeprefix("event: ") for f in frames]
    assert names[0] == "message_start" and "content_block_delta" in names
    assert names[-1] == "error" and "message_stop" not in names
    error = json.loads(frames[-1].split("\ndata: ", 1)[1])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"


async def test_waiting_client_gets_ping_events() -> None:
    """A streaming client queued behind a busy model receives ping events while it waits."""
    long_text = " ".join(["word"] * 30)
    async with anthropic_fleet(SLOW) as (gw, _, sdk):
        async with sdk.messages.stream(
            model="slow", max_tokens=64, messages=[{"role": "user", "content": long_text}]
        ) as holding:
            async for event in holding:
                if event.type == "content_block_delta":
                    break  # the one slot is taken for about three more seconds
            body = {**PING_BODY, "model": "slow"}
            async with http() as session, session.post(gw.url + "/v1/messages", json=body) as r:
                first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), timeout=10)
    assert first == b'event: ping\ndata: {"type":"ping"}\n\n'
