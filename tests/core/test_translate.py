"""Anthropic <-> OpenAI request and response translation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cortex.core.translate import (
    anthropic_count_tokens_request,
    anthropic_to_openai,
    new_message_id,
    openai_to_anthropic,
)
from cortex.errors import BadRequest, UpstreamFailed


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 64, "messages": list(messages), **extra}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def text(t: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": t, **extra}


def bad_request(request: dict[str, Any]) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        anthropic_to_openai(request)
    return info.value


# Requests


def test_minimal_request() -> None:
    """A string user turn becomes one user message; model and max_tokens pass."""
    assert anthropic_to_openai(body(user("hi"))) == {
        "model": "m",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_system_sources_merge_into_one_leading_message() -> None:
    """Top-level system and system turns anywhere merge, in order, into one first message."""
    request = body(
        user("q"),
        {"role": "system", "content": "late"},
        {"role": "system", "content": [text("blocks")]},
        system=[text("a", cache_control={"type": "ephemeral"}), text("b")],
    )
    assert anthropic_to_openai(request)["messages"] == [
        {"role": "system", "content": "a\n\nb\n\nlate\n\nblocks"},
        {"role": "user", "content": "q"},
    ]


def test_text_blocks_join_into_a_string() -> None:
    """A turn of text blocks becomes one string content."""
    messages = anthropic_to_openai(body(user([text("one"), text("two")])))["messages"]
    assert messages == [{"role": "user", "content": "one\n\ntwo"}]


def test_images_become_image_url_parts() -> None:
    """Base64 and url images become image_url parts, in order with the text."""
    b64 = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
    url = {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
    messages = anthropic_to_openai(body(user([text("look"), b64, url])))["messages"]
    assert messages[0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
    ]


def test_unsupported_image_source_is_rejected() -> None:
    """An image from a file id cannot be represented and is a 400 naming the field."""
    block = {"type": "image", "source": {"type": "file", "file_id": "f"}}
    err = bad_request(body(user([block])))
    assert err.param == "messages[0].content[0].source.type"


def test_tool_use_becomes_tool_calls() -> None:
    """tool_use blocks become tool_calls with compact JSON arguments; text goes to content."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Zürich"}}
    messages = anthropic_to_openai(body(user("q"), assistant([text("let me see"), call])))[
        "messages"
    ]
    assert messages[1] == {
        "role": "assistant",
        "content": "let me see",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get", "arguments": '{"city":"Zürich"}'},
            }
        ],
    }


def test_tool_use_alone_has_null_content() -> None:
    """An assistant turn with only tool calls has null content."""
    call = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    messages = anthropic_to_openai(body(user("q"), assistant([call])))["messages"]
    assert messages[1]["content"] is None


def test_tool_results_come_first_then_user_text() -> None:
    """Tool results become tool messages right after the assistant turn, then the user text."""
    call = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    call2 = {"type": "tool_use", "id": "t2", "name": "f", "input": {}}
    results = [
        text("and also"),
        {"type": "tool_result", "tool_use_id": "t1", "content": "42"},
        {"type": "tool_result", "tool_use_id": "t2", "content": [text("a"), text("b")]},
    ]
    messages = anthropic_to_openai(body(user("q"), assistant([call, call2]), user(results)))[
        "messages"
    ]
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "42"},
        {"role": "tool", "tool_call_id": "t2", "content": "a\n\nb"},
        {"role": "user", "content": "and also"},
    ]


def test_tool_result_error_is_marked() -> None:
    """An is_error tool result keeps its text prefixed with 'Error: '."""
    result = {"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True}
    messages = anthropic_to_openai(body(user([result])))["messages"]
    assert messages == [{"role": "tool", "tool_call_id": "t", "content": "Error: boom"}]


def test_tool_result_without_content_is_empty() -> None:
    """A tool result with no content is an empty tool message."""
    messages = anthropic_to_openai(body(user([{"type": "tool_result", "tool_use_id": "t"}])))
    assert messages["messages"] == [{"role": "tool", "tool_call_id": "t", "content": ""}]


def test_tool_result_image_moves_to_the_next_user_message() -> None:
    """An image inside a tool result is carried in the user message after the tool messages."""
    image = {"type": "image", "source": {"type": "url", "url": "https://x/i.png"}}
    result = {"type": "tool_result", "tool_use_id": "t", "content": [text("shot"), image]}
    messages = anthropic_to_openai(body(user([result])))["messages"]
    assert messages == [
        {
            "role": "tool",
            "tool_call_id": "t",
            "content": "shot\n\n[image attached in the next user message]",
        },
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/i.png"}}],
        },
    ]


def test_thinking_blocks_are_dropped() -> None:
    """Thinking and redacted thinking blocks in history do not reach the neuron."""
    history = [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "redacted_thinking", "data": "xx"},
        text("answer"),
    ]
    messages = anthropic_to_openai(body(user("q"), assistant(history), user("more")))["messages"]
    assert messages[1] == {"role": "assistant", "content": "answer"}


def test_assistant_with_only_thinking_keeps_an_empty_turn() -> None:
    """An assistant turn left empty by dropped thinking still appears, with empty content."""
    history = [{"type": "thinking", "thinking": "hmm", "signature": "s"}]
    messages = anthropic_to_openai(body(user("q"), assistant(history), user("q2")))["messages"]
    assert messages[1] == {"role": "assistant", "content": ""}


def test_text_documents_become_text() -> None:
    """Documents with a text or content source become text; others are a 400."""
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "D"}}
    doc2 = {"type": "document", "source": {"type": "content", "content": [text("E")]}}
    messages = anthropic_to_openai(body(user([doc, doc2])))["messages"]
    assert messages == [{"role": "user", "content": "D\n\nE"}]
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf"}}
    assert bad_request(body(user([pdf]))).param == "messages[0].content[0].source.type"


def test_tools_become_function_tools() -> None:
    """Tools map to OpenAI functions; empty schemas get an object schema; extras are ignored."""
    tools = [
        {"name": "a", "description": "d", "input_schema": {"type": "object", "required": ["x"]}},
        {"name": "b", "input_schema": {}, "defer_loading": True, "cache_control": {"type": "x"}},
        {"type": "custom", "name": "c"},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    ]
    out = anthropic_to_openai(body(user("q"), tools=tools))["tools"]
    empty = {"type": "object", "properties": {}}
    assert out == [
        {
            "type": "function",
            "function": {
                "name": "a",
                "parameters": {"type": "object", "required": ["x"]},
                "description": "d",
            },
        },
        {"type": "function", "function": {"name": "b", "parameters": empty}},
        {"type": "function", "function": {"name": "c", "parameters": empty}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
            {
                "tool_choice": {"type": "function", "function": {"name": "f"}},
                "parallel_tool_calls": False,
            },
        ),
    ],
)
def test_tool_choice_maps(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    """tool_choice auto/any/none/tool map to auto/required/none/named."""
    out = anthropic_to_openai(body(user("q"), tool_choice=choice))
    assert {k: out[k] for k in expected} == expected


def test_sampling_stop_and_stream_pass() -> None:
    """Sampling fields pass; stop_sequences become stop; stream asks for usage."""
    out = anthropic_to_openai(
        body(
            user("q"),
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            stop_sequences=["END"],
            stream=True,
        )
    )
    assert out["temperature"] == 0.5
    assert (out["top_p"], out["top_k"], out["stop"]) == (0.9, 40, ["END"])
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


def test_claude_code_shaped_request() -> None:
    """A request shaped like Claude Code's translates, its extras ignored."""
    request = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "s"})},
        "system": [
            text("You are Claude Code.", cache_control={"type": "ephemeral"}),
            text("Be brief.", cache_control={"type": "ephemeral", "ttl": "1h"}),
        ],
        "messages": [
            user([text("<system-reminder>ctx</system-reminder>"), text("hello", cache_control={})]),
            {"role": "system", "content": "reminder at the end"},
        ],
        "tools": [
            {"name": "Bash", "description": "run", "input_schema": {"type": "object"}},
            {"name": "ToolSearch", "input_schema": {}, "defer_loading": True},
        ],
        "service_tier": "auto",
    }
    out = anthropic_to_openai(request)
    assert out["messages"] == [
        {"role": "system", "content": "You are Claude Code.\n\nBe brief.\n\nreminder at the end"},
        {"role": "user", "content": "<system-reminder>ctx</system-reminder>\n\nhello"},
    ]
    assert [t["function"]["name"] for t in out["tools"]] == ["Bash", "ToolSearch"]
    assert set(out) == {"model", "max_tokens", "messages", "tools", "stream", "stream_options"}


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({"model": "m", "messages": [user("q")]}, "max_tokens"),
        ({"model": "m", "max_tokens": 0, "messages": [user("q")]}, "max_tokens"),
        ({"model": "m", "max_tokens": True, "messages": [user("q")]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5}, "messages"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": 5, "messages": "hi"}, "messages"),
        ({"max_tokens": 5, "messages": [user("q")]}, "model"),
        (body("x"), "messages[0]"),
        (body({"role": "tool", "content": "x"}), "messages[0].role"),
        (body(user(7)), "messages[0].content"),
        (body(user(["x"])), "messages[0].content[0]"),
        (body(user("q"), user([text("a"), {"type": "foo"}])), "messages[1].content[1].type"),
        (body(user([text(3)])), "messages[0].content[0].text"),
        (body(user([{"type": "tool_use", "id": "t", "name": "f"}])), "messages[0].content[0].type"),
        (
            body(assistant([{"type": "tool_result", "tool_use_id": "t"}])),
            "messages[0].content[0].type",
        ),
        (
            body(assistant([{"type": "tool_use", "id": "t", "name": "f", "input": []}])),
            "messages[0].content[0].input",
        ),
        (body(user("q"), system=[{"type": "image"}]), "system[0].type"),
        (body(user("q"), tools=[{"description": "no name"}]), "tools[0].name"),
        (body(user("q"), tools={"name": "f"}), "tools"),
        (body(user("q"), tool_choice={"type": "sometimes"}), "tool_choice.type"),
        (body(user("q"), stop_sequences=[1]), "stop_sequences[0]"),
        (body(user("q"), temperature="hot"), "temperature"),
        (body(user("q"), stream="yes"), "stream"),
    ],
)
def test_unrepresentable_input_is_a_400_naming_the_field(
    request_body: dict[str, Any], param: str
) -> None:
    """What cannot be represented is rejected with a 400 whose message names the field."""
    err = bad_request(request_body)
    assert err.status == 400
    assert err.param == param
    assert err.message.startswith(f"{param}: ")


def test_unknown_block_type_message() -> None:
    """An unknown block type's message names its path and the type."""
    err = bad_request(body(user("a"), assistant("b"), user([{"type": "foo"}])))
    assert err.message == "messages[2].content[0].type: unsupported block type 'foo' in a user turn"


def test_count_tokens_request() -> None:
    """count_tokens bodies translate to the tokenize body without needing max_tokens."""
    request = {
        "model": "m",
        "system": "s",
        "messages": [user("hi")],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    }
    assert anthropic_count_tokens_request(request) == {
        "model": "m",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
    }


# Request properties: nothing dropped, every message, tool and result counted.

words = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=8)
text_blocks = st.builds(text, words)
images = st.builds(
    lambda u: {"type": "image", "source": {"type": "url", "url": "https://i/" + u}}, words
)
tool_uses = st.builds(
    lambda i, n, a: {"type": "tool_use", "id": f"t{i}", "name": n, "input": a},
    st.integers(0, 999),
    words,
    st.dictionaries(words, st.integers() | words, max_size=3),
)
tool_results = st.builds(
    lambda i, c, e: {"type": "tool_result", "tool_use_id": f"t{i}", "content": c, "is_error": e},
    st.integers(0, 999),
    words | st.lists(text_blocks, max_size=2),
    st.booleans(),
)
user_turns = st.builds(
    user, words | st.lists(text_blocks | images | tool_results, min_size=1, max_size=5)
)
assistant_turns = st.builds(
    assistant, words | st.lists(text_blocks | tool_uses, min_size=1, max_size=4)
)
system_turns = st.builds(lambda c: {"role": "system", "content": c}, words | st.lists(text_blocks))
tool_defs = st.builds(
    lambda n, s, t: {"name": n, "input_schema": s, **({"type": t} if t else {})},
    words,
    st.just({}) | st.just({"type": "object"}),
    st.sampled_from([None, "custom", "web_search_20250305", "bash_20250124"]),
)


def blocks_of(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    content = message["content"]
    return [b for b in content if b["type"] == kind] if isinstance(content, list) else []


@given(
    st.lists(user_turns | assistant_turns | system_turns, min_size=1, max_size=6),
    st.lists(tool_defs, max_size=4),
    st.none() | words,
)
def test_nothing_is_silently_dropped(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], system: str | None
) -> None:
    """Every message, tool call, tool result, image, text and custom tool is carried."""
    out = anthropic_to_openai(body(*messages, tools=tools, system=system))
    got = out["messages"]
    has_system = system is not None or any(m["role"] == "system" for m in messages)
    assert (got[0]["role"] == "system") == has_system
    assert sum(m["role"] == "system" for m in got) == int(has_system)
    users = [m for m in messages if m["role"] == "user"]
    results = [b for m in users for b in blocks_of(m, "tool_result")]
    other = [m for m in users if len(blocks_of(m, "tool_result")) != len(m["content"])]
    assert sum(m["role"] == "tool" for m in got) == len(results)
    assert sum(m["role"] == "user" for m in got) == len(other)
    assistants = [m for m in messages if m["role"] == "assistant"]
    assert sum(m["role"] == "assistant" for m in got) == len(assistants)
    calls = [c for m in got for c in m.get("tool_calls", ())]
    uses = [b for m in assistants for b in blocks_of(m, "tool_use")]
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls
    ] == [(u["id"], u["name"], u["input"]) for u in uses]
    assert [m["tool_call_id"] for m in got if m["role"] == "tool"] == [
        r["tool_use_id"] for r in results
    ]
    rendered = json.dumps(got, ensure_ascii=False)
    for m in messages:
        for b in [text(m["content"])] if isinstance(m["content"], str) else m["content"]:
            if b["type"] == "text":
                assert json.dumps(b["text"], ensure_ascii=False)[1:-1] in rendered
            elif b["type"] == "image":
                assert json.dumps(b["source"]["url"], ensure_ascii=False)[1:-1] in rendered
    kept = [t for t in tools if t.get("type", "custom") == "custom"]
    assert [t["function"]["name"] for t in out.get("tools", [])] == [t["name"] for t in kept]


@given(
    st.lists(user_turns | assistant_turns, min_size=1, max_size=5),
    st.data(),
    st.sampled_from(["foo", "server_tool_use", "container_upload", ""]),
)
def test_unknown_block_types_are_rejected_with_their_path(
    messages: list[dict[str, Any]], data: st.DataObject, kind: str
) -> None:
    """Any unknown block type anywhere is a 400 naming exactly that block."""
    i = data.draw(st.integers(0, len(messages) - 1))
    content = messages[i]["content"]
    if isinstance(content, str):
        content = messages[i]["content"] = [text(content)]
    j = data.draw(st.integers(0, len(content)))
    content.insert(j, {"type": kind, "cache_control": {"type": "ephemeral"}})
    err = bad_request(body(*messages))
    assert err.param == f"messages[{i}].content[{j}].type"


# Responses


def completion(
    message: dict[str, Any], finish: str | None = "stop", **extra: Any
) -> dict[str, Any]:
    choice = {"index": 0, "message": message, "finish_reason": finish, **extra}
    usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    return {"id": "chatcmpl-abc", "object": "chat.completion", "choices": [choice], "usage": usage}


def test_text_response() -> None:
    """A text completion becomes a message with one text block and end_turn."""
    out = openai_to_anthropic(
        completion({"role": "assistant", "content": "hi"}), model="m", message_id="msg_1"
    )
    assert out == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 3},
    }


@pytest.mark.parametrize(
    ("finish", "extra", "reason", "sequence"),
    [
        ("stop", {}, "end_turn", None),
        ("length", {}, "max_tokens", None),
        ("tool_calls", {}, "tool_use", None),
        ("content_filter", {}, "refusal", None),
        (None, {}, "end_turn", None),
        ("stop", {"stop_reason": "END"}, "stop_sequence", "END"),
        ("stop", {"stop_reason": "OTHER"}, "end_turn", None),
        ("stop", {"stop_reason": 128001}, "end_turn", None),
    ],
)
def test_finish_reasons_map(
    finish: str | None, extra: dict[str, Any], reason: str, sequence: str | None
) -> None:
    """finish_reason and a matched stop string map to stop_reason and stop_sequence."""
    response = completion({"role": "assistant", "content": "x"}, finish, **extra)
    out = openai_to_anthropic(response, model="m", stop_sequences=["END"], message_id="msg_1")
    assert (out["stop_reason"], out["stop_sequence"]) == (reason, sequence)


def test_tool_calls_become_tool_use_blocks() -> None:
    """Tool calls become tool_use blocks after the text, with parsed input and ids."""
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
        {"type": "function", "function": {"name": "g", "arguments": ""}},
        {"id": "call_3", "type": "function", "function": {"name": "h", "arguments": "{oops"}},
        {"id": "call_4", "type": "function", "function": {"name": "k", "arguments": "[1]"}},
    ]
    response = completion({"role": "assistant", "content": "ok", "tool_calls": calls}, "stop")
    out = openai_to_anthropic(response, model="m", message_id="msg_xyz")
    assert out["content"] == [
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": "toolu_xyz_1", "name": "g", "input": {}},
        {"type": "tool_use", "id": "call_3", "name": "h", "input": {"_raw": "{oops"}},
        {"type": "tool_use", "id": "call_4", "name": "k", "input": {"_raw": "[1]"}},
    ]
    assert out["stop_reason"] == "tool_use"


def test_cached_tokens_are_counted_apart() -> None:
    """Cached prompt tokens go to cache_read_input_tokens and leave input_tokens."""
    response = completion({"role": "assistant", "content": "x"})
    response["usage"]["prompt_tokens_details"] = {"cached_tokens": 4}
    out = openai_to_anthropic(response, model="m", message_id="msg_1")
    assert out["usage"] == {"input_tokens": 6, "output_tokens": 3, "cache_read_input_tokens": 4}


def test_response_without_usage_or_content() -> None:
    """A completion missing usage and content still gives a well-formed message."""
    out = openai_to_anthropic({"choices": [{"message": {"content": None}}]}, model="m")
    assert out["content"] == []
    assert out["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert out["id"] == "msg_0"


def test_message_id_derives_from_upstream_when_not_given() -> None:
    """Without a message id the id is derived from the completion id, the same every time."""
    response = completion({"role": "assistant", "content": "x"})
    assert openai_to_anthropic(response, model="m")["id"] == "msg_abc"


def test_new_message_ids_are_unique() -> None:
    """Fresh message ids carry the msg_ prefix and differ."""
    ids = {new_message_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith("msg_") for i in ids)


@pytest.mark.parametrize(
    "response",
    [[], {"choices": [{"message": {"tool_calls": [7]}}]}, {"choices": {"0": {}}}],
)
def test_malformed_completion_is_an_upstream_failure(response: Any) -> None:
    """A completion not shaped like one is a 502, not a crash."""
    with pytest.raises(UpstreamFailed):
        openai_to_anthropic(response, model="m", message_id="msg_1")
