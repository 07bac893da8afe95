"""The official openai SDK against a real gateway and a real echo neuron on loopback."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from tests.fleet import ECHO_MODELS, RunningGateway, RunningNeuron, kill_connections, local_fleet

HELLO: list[Any] = [{"role": "user", "content": "one two three"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK_WEATHER: list[Any] = [
    {"role": "user", "content": '@@tool:get_weather:{"city":"Paris"}@@'},
]
SLOW = (
    '[[models]]\nid = "slow"\nharness = "echo"\nmax_concurrency = 1\noptions = {delay_ms = 100}\n'
)
FAR = '[[models]]\nid = "far"\nharness = "echo"\npinned_on = ["elsewhere"]\n'


def client(gw: RunningGateway, api_key: str = "test") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gw.url + "/v1", api_key=api_key, max_retries=0)


@contextlib.asynccontextmanager
async def openai_fleet(
    models_toml: str | None = None, **gateway: Any
) -> AsyncIterator[tuple[RunningGateway, AsyncOpenAI]]:
    fleet = local_fleet(models_toml, **gateway) if models_toml else local_fleet(**gateway)
    async with fleet as (gw, _):
        sdk = client(gw)
        try:
            yield gw, sdk
        finally:
            await sdk.close()


async def test_chat_completion_round_trips() -> None:
    """A plain chat completion parses into the SDK's types with usage."""
    async with openai_fleet() as (_, sdk):
        completion = await sdk.chat.completions.create(model="echo", messages=HELLO)
    choice = completion.choices[0]
    assert choice.message.content == "one two three" and choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 6


async def test_raw_stream_has_role_first_and_finish_last() -> None:
    """stream=True yields typed chunks: the role first, the words, then finish_reason."""
    async with openai_fleet() as (_, sdk):
        stream = await sdk.chat.completions.create(model="echo", messages=HELLO, stream=True)
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_include_usage_adds_a_usage_chunk() -> None:
    """stream_options.include_usage ends the stream with a usage chunk without choices."""
    async with openai_fleet() as (_, sdk):
        stream = await sdk.chat.completions.create(
            model="echo", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_stream_helper_gives_the_final_completion() -> None:
    """chat.completions.stream() accumulates content events into a final completion."""
    async with openai_fleet() as (_, sdk):
        async with sdk.chat.completions.stream(model="echo", messages=HELLO) as stream:
            deltas = [e.delta async for e in stream if e.type == "content.delta" and e.delta]
            final = await stream.get_final_completion()
    assert deltas == ["one ", "two ", "three"]
    assert final.choices[0].message.content == "one two three"
    assert final.choices[0].finish_reason == "stop"


async def test_tool_calls_across_two_turns() -> None:
    """A tool call comes back with JSON arguments; its result is answered next turn."""
    async with openai_fleet() as (_, sdk):
        first = await sdk.chat.completions.create(
            model="echo", messages=ASK_WEATHER, tools=[WEATHER_TOOL]
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls or []
        assert call.type == "function" and call.id
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        history: list[Any] = [
            *ASK_WEATHER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call.model_dump(exclude_none=True)],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ]
        second = await sdk.chat.completions.create(
            model="echo", messages=history, tools=[WEATHER_TOOL]
        )
    answer = second.choices[0].message.content or ""
    assert "TOOL_RESULT_SEEN" in answer and "sunny, 21C" in answer


async def test_streamed_tool_call_deltas_carry_index_type_and_id() -> None:
    """Streamed tool calls have index, type, id and name, and the helper parses them."""
    async with openai_fleet() as (_, sdk):
        stream = await sdk.chat.completions.create(
            model="echo", messages=ASK_WEATHER, tools=[WEATHER_TOOL], stream=True
        )
        chunks = [chunk async for chunk in stream]
        async with sdk.chat.completions.stream(
            model="echo", messages=ASK_WEATHER, tools=[WEATHER_TOOL]
        ) as helper:
            final = await helper.get_final_completion()
    calls = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert calls[0].index == 0 and calls[0].type == "function" and calls[0].id
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    (call,) = final.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_max_completion_tokens_limits_the_answer() -> None:
    """max_completion_tokens cuts the answer and finishes with length."""
    async with openai_fleet() as (_, sdk):
        completion = await sdk.chat.completions.create(
            model="echo", messages=HELLO, max_completion_tokens=2
        )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "one two "


async def test_legacy_completion() -> None:
    """The legacy completions route echoes the prompt."""
    async with openai_fleet() as (_, sdk):
        completion = await sdk.completions.create(model="echo", prompt="one two")
    assert completion.choices[0].text == "one two"


async def test_embeddings_are_deterministic_vectors() -> None:
    """Embeddings come back as 8-dimensional vectors, the same for the same text."""
    async with openai_fleet() as (_, sdk):
        first = await sdk.embeddings.create(model="echo", input=["alpha", "beta"])
        again = await sdk.embeddings.create(model="echo", input="alpha")
    assert [len(e.embedding) for e in first.data] == [8, 8]
    assert first.data[0].embedding == again.data[0].embedding


async def test_models_list() -> None:
    """models.list() and models.retrieve() parse the gateway's model listing."""
    async with openai_fleet() as (_, sdk):
        listed = [model async for model in sdk.models.list()]
        one = await sdk.models.retrieve("parrot")
    assert [m.id for m in listed] == ["echo"] and listed[0].object == "model"
    assert one.id == "echo"


async def test_errors_map_to_sdk_exception_classes() -> None:
    """400, 404 and 503 answers raise the SDK's matching exception classes."""
    async with openai_fleet(ECHO_MODELS + FAR) as (_, sdk):
        with pytest.raises(openai.BadRequestError) as bad:
            await sdk.chat.completions.create(model="echo", messages=HELLO, n=2)
        with pytest.raises(openai.NotFoundError) as missing:
            await sdk.chat.completions.create(model="gpt-9", messages=HELLO)
        with pytest.raises(openai.InternalServerError) as unavailable:
            await sdk.chat.completions.create(model="far", messages=HELLO)
    assert bad.value.status_code == 400
    assert missing.value.code == "not_found" and "gpt-9" in missing.value.message
    assert unavailable.value.status_code == 503


async def test_api_key_is_required() -> None:
    """With api_keys set, a wrong key raises AuthenticationError and the right one passes."""
    async with openai_fleet(api_keys=("k1",)) as (gw, sdk):
        with pytest.raises(openai.AuthenticationError):
            await sdk.chat.completions.create(model="echo", messages=HELLO)
        async with client(gw, api_key="k1") as good:
            completion = await good.chat.completions.create(model="echo", messages=HELLO)
    assert completion.choices[0].message.content == "one two three"


async def test_full_queue_raises_rate_limit_error() -> None:
    """A request beyond a full queue raises RateLimitError."""
    async with openai_fleet(SLOW, max_queue_per_model=0) as (_, sdk):
        holding = await sdk.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "a b c d e f"}], stream=True
        )
        async for chunk in holding:
            if chunk.choices and chunk.choices[0].delta.content:
                break  # admitted and generating: the one slot is taken
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="slow", messages=HELLO)
        await holding.close()
    assert caught.value.response.headers["retry-after"]


async def test_upstream_failure_mid_stream_raises_in_the_sdk() -> None:
    """A neuron that dies mid-stream makes the SDK's stream raise APIError."""
    async with local_fleet(SLOW) as (gw, neuron), client(gw) as sdk:
        with pytest.raises(openai.APIError) as caught:
            await stream_and_kill(sdk, neuron)
    assert "mid-stream" in caught.value.message


async def stream_and_kill(sdk: AsyncOpenAI, neuron: RunningNeuron) -> None:
    """Stream a long answer and kill the neuron's connections at its first text."""
    stream = await sdk.chat.completions.create(
        model="slow", messages=[{"role": "user", "content": "a b c d e f g h"}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            kill_connections(neuron)
