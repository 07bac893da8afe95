"""Tool calls and reasoning are split out of model text, streamed or whole."""

from __future__ import annotations

import itertools
import json
from typing import Any

from cortex_onnx.output import OutputPipeline
from cortex_onnx.tags import TagSplitter
from cortex_onnx.toolcalls import ToolCallStream, parse_tool_call, parse_tool_calls
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer

from cortex.harness import TextDelta, ToolCall
from tests.neuron.onnxtiny import TINY


def ids() -> Any:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


plain = st.text(st.characters(exclude_characters="<", exclude_categories=("Cs",)), max_size=20)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
arguments = st.dictionaries(st.text(max_size=6), json_values, max_size=4)


def split(text: str, cuts: set[int]) -> list[str]:
    points = sorted(cuts | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


@given(plain)
def test_text_without_markers_is_left_alone(text: str) -> None:
    """Plain text comes back unchanged with no calls."""
    assert parse_tool_calls(text) == (text, [])


@given(st.lists(st.tuples(plain, names, arguments), min_size=1, max_size=3), plain, st.data())
def test_hermes_calls_parse_back_in_order(
    parts: list[tuple[str, str, dict[str, Any]]], tail: str, data: st.DataObject
) -> None:
    """Calls written in Hermes markup come back as the same names and arguments, in order,
    however the text is streamed, and the text around them is the content."""
    calls_text = [
        "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"
        for _, name, args in parts
    ]
    text = "".join(before + call for (before, _, _), call in zip(parts, calls_text, strict=True))
    text += tail
    stream = ToolCallStream(ids())
    events: list[TextDelta | ToolCall] = []
    for chunk in split(text, data.draw(st.sets(st.integers(0, len(text))))):
        events += stream.feed(chunk)
    events += stream.finish()
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [(n, a) for _, n, a in parts]
    content = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert content == "".join(before for before, _, _ in parts) + tail
    assert [c.id for c in calls] == [f"call_{i}" for i in range(len(parts))]


@given(st.text(max_size=40), st.data())
def test_tag_segments_reassemble_the_input(text: str, data: st.DataObject) -> None:
    """Putting the tags back around the segments gives the streamed text."""
    splitter = TagSplitter("<t>", "</t>")
    segments = []
    for chunk in split(text, data.draw(st.sets(st.integers(0, len(text))))):
        segments += splitter.feed(chunk)
    segments += splitter.flush()
    rebuilt = {"open": "<t>", "close": "</t>"}
    assert "".join(rebuilt.get(kind, t) for kind, t in segments) == text


def test_possible_marker_is_held_back_while_streaming() -> None:
    """Text that may start <tool_call> is withheld until it cannot be one."""
    stream = ToolCallStream(ids())
    assert stream.feed("Hi <tool") == [TextDelta("Hi ")]
    assert stream.feed("box> done") == [TextDelta("<toolbox> done")]


def test_invalid_call_body_stays_in_the_content() -> None:
    """A marker around something that is not a call is kept verbatim as text."""
    text = "a <tool_call>{not json}</tool_call> b"
    assert parse_tool_calls(text) == (text, [])


def test_unclosed_call_at_the_end_is_still_parsed() -> None:
    """A complete call whose closing marker never came is still a call."""
    content, calls = parse_tool_calls('<tool_call>{"name": "f", "arguments": {"x": 1}}', ids())
    assert content == ""
    assert calls == [ToolCall("call_0", "f", '{"x": 1}')]


def test_arguments_given_as_json_text_are_accepted() -> None:
    """Arguments written as a JSON string of an object parse like an object."""
    call = parse_tool_call('{"name": "f", "arguments": "{\\"a\\": [1, 2]}"}', ids())
    assert call == ToolCall("call_0", "f", '{"a": [1, 2]}')
    assert parse_tool_call('{"name": "f", "arguments": [1]}') is None


def test_pipeline_drops_reasoning_and_emits_calls_from_token_ids() -> None:
    """Token ids through the pipeline: <think> is dropped, a call becomes a ToolCall."""
    tokenizer = Tokenizer.from_file(str(TINY / "tokenizer.json"))
    call = '<tool_call>\n{"name": "get", "arguments": {"q": "é"}}\n</tool_call>'
    text = "<think>plan é</think>Sure. " + call
    pipeline = OutputPipeline(lambda xs: tokenizer.decode(list(xs)), (), ids())
    events = [e for token in tokenizer.encode(text).ids for e in pipeline.push(token)]
    events += pipeline.finish()
    text_events = [e for e in events if isinstance(e, TextDelta)]
    assert "".join(e.text for e in text_events) == "Sure. "
    assert events[len(text_events) :] == [ToolCall("call_0", "get", '{"q": "é"}')]
    assert pipeline.tool_calls == 1
