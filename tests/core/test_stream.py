"""The OpenAI chunk -> Anthropic event stream translator."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cortex.core.sse import DONE, SSEParser, comment, encode_data, encode_event
from cortex.core.stream import AnthropicStreamTranslator, Event, error_event


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [choice],
        **extra,
    }


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def role(prompt: int = 7) -> dict[str, Any]:
    return chunk({"role": "assistant", "content": ""}, usage=usage(prompt, 0))


def tool(
    index: int, arguments: str = "", id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        call.update(id=id, type="function")
    if name is not None:
        call["function"]["name"] = name
    return call


def translate(chunks: list[dict[str, Any]], stop_sequences: tuple[str, ...] = ()) -> list[Event]:
    translator = AnthropicStreamTranslator(
        model="m", message_id="msg_1", stop_sequences=stop_sequences
    )
    events = [e for c in chunks for e in translator.feed(c)]
    return events + translator.finish()


def check(events: list[Event]) -> list[dict[str, Any]]:
    """Asserts the Anthropic stream grammar and returns the blocks it builds."""
    assert all(data["type"] == name for name, data in events)
    assert events[0][0] == "message_start"
    start = events[0][1]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert isinstance(start["usage"]["input_tokens"], int)
    assert start["usage"]["output_tokens"] == 0
    assert [name for name, _ in events[-2:]] == ["message_delta", "message_stop"]
    end_usage = events[-2][1]["usage"]
    assert isinstance(end_usage["output_tokens"], int)
    assert isinstance(end_usage["input_tokens"], int)
    blocks: list[dict[str, Any]] = []
    open_index = None
    for name, data in events[1:-2]:
        assert name in {"content_block_start", "content_block_delta", "content_block_stop", "ping"}
        if name == "content_block_start":
            assert open_index is None
            assert data["index"] == len(blocks)
            block = dict(data["content_block"])
            if block["type"] == "text":
                assert block["text"] == ""
            else:
                assert block["type"] == "tool_use"
                assert block["id"]
                assert block["input"] == {}
                block["json"] = ""
            blocks.append(block)
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[open_index]["text"] += delta["text"]
            else:
                assert delta["type"] == "input_json_delta"
                blocks[open_index]["json"] += delta["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None
    return blocks


def test_text_stream() -> None:
    """Text deltas become one text block between message_start and message_stop."""
    chunks = [
        role(),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk(finish="stop", usage=usage(7, 2)),
    ]
    events = translate(chunks)
    assert events == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "m",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 7, "output_tokens": 0},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hel"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "lo"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"input_tokens": 7, "output_tokens": 2},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_tool_calls_stream_as_tool_use_blocks() -> None:
    """Each tool-call index becomes its own tool_use block after the text block closes."""
    chunks = [
        role(),
        chunk({"content": "Let me check."}),
        chunk({"tool_calls": [tool(0, "", id="call_a", name="get")]}),
        chunk({"tool_calls": [tool(0, '{"ci')]}),
        chunk({"tool_calls": [tool(0, 'ty":"Paris"}'), tool(1, "{}", name="now")]}),
        chunk(finish="tool_calls", usage=usage(7, 9)),
    ]
    events = translate(chunks)
    blocks = check(events)
    assert blocks == [
        {"type": "text", "text": "Let me check."},
        {
            "type": "tool_use",
            "id": "call_a",
            "name": "get",
            "input": {},
            "json": '{"city":"Paris"}',
        },
        {"type": "tool_use", "id": "toolu_1_1", "name": "now", "input": {}, "json": "{}"},
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_stop_sequence_is_reported() -> None:
    """A matched stop string from the neuron becomes stop_sequence."""
    final = {"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END"}
    events = translate(
        [role(), chunk({"content": "x"}), {"choices": [final]}], stop_sequences=("END",)
    )
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


def test_length_maps_to_max_tokens() -> None:
    """finish_reason length ends the message with max_tokens."""
    events = translate([role(), chunk({"content": "x"}, "length")])
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_usage_chunk_and_cached_tokens() -> None:
    """A trailing usage-only chunk sets the final usage; cached tokens are counted apart."""
    final_usage = {**usage(10, 4), "prompt_tokens_details": {"cached_tokens": 6}}
    chunks = [
        role(10),
        chunk({"content": "x"}),
        chunk(finish="stop"),
        {"choices": [], "usage": final_usage},
    ]
    events = translate(chunks)
    assert events[0][1]["message"]["usage"] == {"input_tokens": 10, "output_tokens": 0}
    assert events[-2][1]["usage"] == {
        "input_tokens": 4,
        "output_tokens": 4,
        "cache_read_input_tokens": 6,
    }


def test_missing_usage_counts_chunks() -> None:
    """Without any upstream usage, input is 0 and output counts content chunks."""
    events = translate(
        [chunk({"role": "assistant"}), chunk({"content": "a"}), chunk({"content": "b"}, "stop")]
    )
    assert events[0][1]["message"]["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert events[-2][1]["usage"] == {"input_tokens": 0, "output_tokens": 2}


def test_reasoning_and_empty_deltas_open_no_block() -> None:
    """reasoning_content, empty content and empty choices produce no content block."""
    chunks = [
        role(),
        chunk({"reasoning_content": "hmm"}),
        chunk({"content": ""}),
        {"choices": []},
        chunk(finish="stop"),
    ]
    assert check(translate(chunks)) == []


def test_finish_is_idempotent_and_feed_after_it_is_ignored() -> None:
    """A second finish and later chunks emit nothing."""
    translator = AnthropicStreamTranslator(model="m", message_id="msg_1")
    translator.feed(role())
    assert translator.finish()[-1] == ("message_stop", {"type": "message_stop"})
    assert translator.finish() == []
    assert translator.feed(chunk({"content": "late"})) == []
    assert translator.fail("late") == []


def test_finish_without_chunks_is_still_well_formed() -> None:
    """An upstream that sent nothing still yields a complete, empty message."""
    translator = AnthropicStreamTranslator(model="m", message_id="msg_1")
    assert check(translator.finish()) == []


def test_fail_ends_the_stream_with_an_error_event() -> None:
    """fail emits one error event, closes nothing further, and no message_stop follows."""
    translator = AnthropicStreamTranslator(model="m", message_id="msg_1")
    translator.feed(role())
    translator.feed(chunk({"content": "partial"}))
    assert translator.fail("neuron died", "overloaded_error") == [
        (
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "neuron died"}},
        )
    ]
    assert translator.finish() == []
    assert translator.feed(chunk({"content": "more"})) == []


def test_error_chunk_fails_the_stream() -> None:
    """An upstream {"error": ...} chunk becomes an Anthropic error event."""
    translator = AnthropicStreamTranslator(model="m", message_id="msg_1")
    translator.feed(role())
    events = translator.feed({"error": {"message": "out of memory", "type": "server_error"}})
    assert events == [
        ("error", {"type": "error", "error": {"type": "api_error", "message": "out of memory"}})
    ]
    assert translator.finish() == []


def test_interleaved_tool_call_fails_rather_than_losing_arguments() -> None:
    """Arguments for a tool call whose block was closed fail the stream instead of vanishing."""
    translator = AnthropicStreamTranslator(model="m", message_id="msg_1")
    translator.feed(role())
    translator.feed(chunk({"tool_calls": [tool(0, "{", id="a", name="f")]}))
    translator.feed(chunk({"tool_calls": [tool(1, "{", id="b", name="g")]}))
    events = translator.feed(chunk({"tool_calls": [tool(0, "}")]}))
    assert events[-1][0] == "error"
    assert translator.finish() == []


def test_tool_calls_without_index_follow_ids() -> None:
    """Tool-call deltas without an index continue the open call until a new id arrives."""
    calls = [
        {"id": "a", "function": {"name": "f", "arguments": "{"}},
        {"function": {"arguments": "}"}},
        {"id": "b", "function": {"name": "g", "arguments": "[]"}},
    ]
    blocks = check(
        translate(
            [role(), *(chunk({"tool_calls": [c]}) for c in calls), chunk(finish="tool_calls")]
        )
    )
    assert [(b["id"], b["json"]) for b in blocks] == [("a", "{}"), ("b", "[]")]


def test_ping_and_error_event_shapes() -> None:
    """ping is a typed event; unknown error types become api_error."""
    translator = AnthropicStreamTranslator(model="m", message_id="msg_1")
    assert translator.ping() == ("ping", {"type": "ping"})
    assert error_event("x", "weird")[1]["error"]["type"] == "api_error"


# The property: any OpenAI chunk sequence gives a well-formed Anthropic stream.

pieces = st.text(max_size=6)


@st.composite
def openai_streams(
    draw: st.DrawFn,
) -> tuple[list[dict[str, Any]], str, list[tuple[str | None, str, str]]]:
    """An OpenAI chunk sequence, its whole text, and its tool calls (id, name, arguments)."""
    chunks: list[dict[str, Any]] = [role(draw(st.integers(0, 99)))] if draw(st.booleans()) else []
    text = ""
    calls: list[tuple[str | None, str, str]] = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            for piece in draw(st.lists(pieces, max_size=4)):
                chunks.append(chunk({"content": piece}))
                text += piece
        else:
            index = len(calls)
            call_id = draw(st.none() | st.just(f"call_{index}"))
            name = draw(st.text(min_size=1, max_size=5))
            arguments = draw(st.text(max_size=20))
            cuts = sorted(draw(st.lists(st.integers(0, len(arguments)), max_size=4)))
            parts = [
                arguments[a:b] for a, b in zip([0, *cuts], [*cuts, len(arguments)], strict=True)
            ]
            deltas = [tool(index, parts[0], id=call_id, name=name)] + [
                tool(index, p) for p in parts[1:]
            ]
            if chunks and draw(st.booleans()) and "tool_calls" in chunks[-1]["choices"][0]["delta"]:
                chunks[-1]["choices"][0]["delta"]["tool_calls"].append(deltas.pop(0))
            chunks += [chunk({"tool_calls": [d]}) for d in deltas]
            calls.append((call_id, name, arguments))
        if draw(st.booleans()):
            chunks.append(chunk({"reasoning_content": draw(pieces)}))
    finish = draw(st.sampled_from([None, "stop", "length", "tool_calls"]))
    chunks.append(
        chunk(
            finish=finish,
            usage=draw(st.none() | st.builds(usage, st.integers(0, 99), st.integers(0, 99))),
        )
    )
    if draw(st.booleans()):
        chunks.append(
            {"choices": [], "usage": usage(draw(st.integers(0, 99)), draw(st.integers(0, 99)))}
        )
    return chunks, text, calls


@given(openai_streams())
def test_any_chunk_sequence_gives_a_well_formed_stream(
    stream: tuple[list[dict[str, Any]], str, list[tuple[str | None, str, str]]],
) -> None:
    """Blocks start and stop once, in order; text and per-call arguments survive intact."""
    chunks, text, calls = stream
    events = translate(chunks)
    blocks = check(events)
    assert "".join(b["text"] for b in blocks if b["type"] == "text") == text
    tools = [b for b in blocks if b["type"] == "tool_use"]
    assert [(b["id"], b["name"], b["json"]) for b in tools] == [
        (call_id or f"toolu_1_{i}", name, arguments)
        for i, (call_id, name, arguments) in enumerate(calls)
    ]
    types = [b["type"] for b in blocks]
    assert all(a != b or a == "tool_use" for a, b in itertools.pairwise(types))
    finish = next(
        (
            c["choices"][0]["finish_reason"]
            for c in chunks
            if c["choices"][0:1] and c["choices"][0]["finish_reason"]
        ),
        None,
    )
    expected = (
        "max_tokens"
        if finish == "length"
        else "tool_use"
        if calls or finish == "tool_calls"
        else "end_turn"
    )
    assert events[-2][1]["delta"]["stop_reason"] == expected
    assert translate(chunks) == events


def test_malformed_chunks_fail_the_stream() -> None:
    """A chunk that is not shaped like an OpenAI chunk fails the stream instead of raising."""
    for bad in ([1], {"choices": [None]}, {"choices": [{"delta": {"tool_calls": [7]}}]}):
        translator = AnthropicStreamTranslator(model="m", message_id="msg_1")
        events = translator.feed(bad)
        assert events[-1] == error_event("malformed chunk from the neuron")
        assert translator.finish() == []


def test_odd_usage_values_count_as_zero() -> None:
    """Non-integer or negative token counts from upstream read as zero."""
    odd = {
        "prompt_tokens": "7",
        "completion_tokens": -1,
        "prompt_tokens_details": {"cached_tokens": None},
    }
    events = translate([chunk({"content": "x"}, "stop", usage=odd)])
    assert events[-2][1]["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_neuron_bytes_become_anthropic_frames() -> None:
    """Neuron SSE bytes, split anywhere, come out as framed Anthropic events that parse back."""
    chunks = [role(), chunk({"content": "a"}), chunk({"content": "b"}, "stop", usage=usage(7, 2))]
    upstream = comment("keep-alive") + b"".join(encode_data(c) for c in chunks) + DONE
    upstream = upstream.replace(b"\n", b"\r\n")
    parser, translator = SSEParser(), AnthropicStreamTranslator(model="m", message_id="msg_1")
    out = b""
    for i in range(0, len(upstream), 7):
        for event in parser.feed(upstream[i : i + 7]):
            if event.data == "[DONE]":
                events = translator.finish()
            else:
                events = translator.feed(json.loads(event.data))
            out += b"".join(encode_event(name, data) for name, data in events)
    parsed = [(e.event, json.loads(e.data)) for e in SSEParser().feed(out)]
    assert parsed == translate(chunks)
