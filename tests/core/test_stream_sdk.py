"""The official anthropic SDK reads translated streams and answers as the same message.

No server: an httpx2 MockTransport answers the SDK with bytes from the SSE encoder, split at
arbitrary points, so any field the SDK needs and misses fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cortex.core.sse import encode_event
from cortex.core.stream import AnthropicStreamTranslator
from cortex.core.translate import openai_to_anthropic
from tests.core.test_stream import chunk, role, tool, usage

MESSAGE_ID = "msg_test"


def completion_of(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streaming completion an OpenAI server would give for these chunks."""
    text, calls, finish, last_usage, matched = "", {}, None, None, None
    for c in chunks:
        last_usage = c.get("usage") or last_usage
        for choice in c["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for call in delta.get("tool_calls", ()):
                entry = calls.setdefault(call["index"], {"type": "function", "function": {}})
                if "id" in call:
                    entry["id"] = call["id"]
                function = entry["function"]
                function["name"] = function.get("name", "") + call["function"].get("name", "")
                arguments = call["function"].get("arguments", "")
                function["arguments"] = function.get("arguments", "") + arguments
            finish = choice["finish_reason"] or finish
            matched = choice.get("stop_reason", matched)
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    choice = {"index": 0, "message": message, "finish_reason": finish, "stop_reason": matched}
    return {"id": "chatcmpl-1", "choices": [choice], "usage": last_usage}


def stream_bytes(chunks: list[dict[str, Any]], stop_sequences: tuple[str, ...]) -> bytes:
    translator = AnthropicStreamTranslator(
        model="m", message_id=MESSAGE_ID, stop_sequences=stop_sequences
    )
    frames = [encode_event(*translator.ping())]
    for c in chunks:
        frames += [encode_event(*e) for e in translator.feed(c)]
        frames.append(encode_event(*translator.ping()))
    frames += [encode_event(*e) for e in translator.finish()]
    return b"".join(frames)


def pieces(raw: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    for a, b in zip([0, *points], [*points, len(raw)], strict=True):
        yield raw[a:b]


def client_for(
    chunks: list[dict[str, Any]], stop_sequences: tuple[str, ...] = (), cuts: tuple[int, ...] = ()
) -> anthropic.Anthropic:
    def answer(request: httpx2.Request) -> httpx2.Response:
        if json.loads(request.content).get("stream"):
            raw = stream_bytes(chunks, stop_sequences)
            headers = {"content-type": "text/event-stream"}
            return httpx2.Response(200, headers=headers, content=pieces(raw, list(cuts)))
        body = openai_to_anthropic(
            completion_of(chunks), model="m", stop_sequences=stop_sequences, message_id=MESSAGE_ID
        )
        return httpx2.Response(200, json=body)

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    return anthropic.Anthropic(
        api_key="k", base_url="http://gateway", http_client=http, max_retries=0
    )


def both(client: anthropic.Anthropic, stop_sequences: tuple[str, ...] = ()) -> tuple[Any, Any]:
    request: dict[str, Any] = {
        "model": "m",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "q"}],
        "stop_sequences": list(stop_sequences),
    }
    with client.messages.stream(**request) as stream:
        streamed = stream.get_final_message()
    whole = client.messages.create(**request)
    return streamed.model_dump(), whole.model_dump()


def test_sdk_reads_text_and_tools_as_the_non_streaming_message() -> None:
    """Text plus two tool calls streamed give the SDK the same message as non-streaming."""
    chunks = [
        role(5),
        chunk({"content": "Checking "}),
        chunk({"content": "weather."}),
        chunk({"tool_calls": [tool(0, '{"city":', id="call_a", name="weather")]}),
        chunk({"tool_calls": [tool(0, ' "Zürich"}'), tool(1, "{}", name="time")]}),
        chunk(
            finish="tool_calls",
            usage={**usage(5, 11), "prompt_tokens_details": {"cached_tokens": 2}},
        ),
    ]
    streamed, whole = both(client_for(chunks))
    assert streamed == whole
    assert whole["stop_reason"] == "tool_use"
    assert [b["input"] for b in whole["content"][1:]] == [{"city": "Zürich"}, {}]
    assert whole["usage"]["cache_read_input_tokens"] == 2


def test_sdk_reads_a_stop_sequence() -> None:
    """A matched stop sequence reaches the SDK the same way streamed or not."""
    final = {"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END"}
    chunks = [role(), chunk({"content": "x"}), {"choices": [final], "usage": usage(7, 1)}]
    streamed, whole = both(client_for(chunks, ("END",)), ("END",))
    assert streamed == whole
    assert (whole["stop_reason"], whole["stop_sequence"]) == ("stop_sequence", "END")


def test_sdk_raises_on_a_mid_stream_error() -> None:
    """An error event after content makes the SDK raise with its message."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        translator = AnthropicStreamTranslator(model="m", message_id=MESSAGE_ID)
        events = translator.feed(role()) + translator.feed(chunk({"content": "half"}))
        events += translator.fail("neuron went away", "overloaded_error")
        raw = b"".join(encode_event(*e) for e in events)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    client = anthropic.Anthropic(api_key="k", base_url="http://g", http_client=http, max_retries=0)
    request: Any = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "q"}]}
    with (
        pytest.raises(anthropic.APIStatusError, match="neuron went away"),
        client.messages.stream(**request) as stream,
    ):
        stream.get_final_message()


json_objects = st.dictionaries(
    st.text(max_size=4), st.integers() | st.text(max_size=6) | st.booleans(), max_size=3
)


@st.composite
def sdk_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """OpenAI chunks whose tool arguments are JSON objects, split anywhere."""
    chunks = [role(draw(st.integers(0, 50)))]
    calls = 0
    for _ in range(draw(st.integers(0, 4))):
        if not calls and draw(st.booleans()):  # non-streaming puts text before tool calls
            chunks += [
                chunk({"content": t}) for t in draw(st.lists(st.text(max_size=5), max_size=3))
            ]
        else:
            arguments = json.dumps(draw(json_objects), ensure_ascii=draw(st.booleans()))
            cuts = sorted(draw(st.lists(st.integers(0, len(arguments)), max_size=3)))
            parts = [
                arguments[a:b] for a, b in zip([0, *cuts], [*cuts, len(arguments)], strict=True)
            ]
            call_id = draw(st.none() | st.just(f"call_{calls}"))
            chunks.append(chunk({"tool_calls": [tool(calls, parts[0], id=call_id, name="f")]}))
            chunks += [chunk({"tool_calls": [tool(calls, p)]}) for p in parts[1:]]
            calls += 1
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length"]))
    chunks.append(
        chunk(finish=finish, usage=usage(draw(st.integers(0, 50)), draw(st.integers(0, 50))))
    )
    return chunks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sdk_streams(), st.lists(st.integers(min_value=0), max_size=8))
def test_sdk_final_message_equals_non_streaming(
    chunks: list[dict[str, Any]], cuts: list[int]
) -> None:
    """For any chunk sequence, the SDK's streamed final message equals the non-streaming one."""
    streamed, whole = both(client_for(chunks, cuts=tuple(cuts)))
    assert streamed == whole
