"""The SSE parser and encoder."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cortex.core.sse import DONE, SSEEvent, SSEParser, comment, encode_data, encode_event


def parse_all(chunks: list[bytes], *, comments: bool = False) -> list[SSEEvent]:
    parser = SSEParser(comments=comments)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def test_event_and_data_lines_make_one_event() -> None:
    """An event line and a data line followed by a blank line dispatch one event."""
    assert parse_all([b"event: ping\ndata: {}\n\n"]) == [SSEEvent("ping", "{}")]


def test_data_without_space_and_multiline_data() -> None:
    """``data:`` without a space is read, and several data lines join with a newline."""
    assert parse_all([b"data:a\ndata: b\ndata:  c\n\n"]) == [SSEEvent(None, "a\nb\n c")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_is_accepted(eol: bytes) -> None:
    """LF, CRLF and CR all end lines."""
    raw = b"event: x" + eol + b"data: 1" + eol + eol + b"data: 2" + eol + eol
    assert parse_all([raw]) == [SSEEvent("x", "1"), SSEEvent(None, "2")]


def test_crlf_split_across_feeds_counts_once() -> None:
    """A CR at the end of one feed and LF at the start of the next are one line break."""
    assert parse_all([b"data: 1\r", b"\n\r", b"\n"]) == [SSEEvent(None, "1")]


def test_multibyte_character_split_across_feeds() -> None:
    """A UTF-8 character split between feeds decodes whole."""
    raw = "data: héllo ☃\n\n".encode()
    cut = raw.index("☃".encode()) + 1
    assert parse_all([raw[:cut], raw[cut:]]) == [SSEEvent(None, "héllo ☃")]


def test_comments_are_skipped_by_default() -> None:
    """Comment lines produce no event unless asked for."""
    raw = b": keep-alive\n\ndata: 1\n\n"
    assert parse_all([raw]) == [SSEEvent(None, "1")]
    assert parse_all([raw], comments=True) == [
        SSEEvent(None, "keep-alive", comment=True),
        SSEEvent(None, "1"),
    ]


def test_incomplete_event_at_end_is_discarded() -> None:
    """An event without its closing blank line is dropped at close, as the spec says."""
    parser = SSEParser()
    assert parser.feed(b"data: 1\n\ndata: 2\n") == [SSEEvent(None, "1")]
    assert parser.has_partial
    assert parser.close() == []
    assert not parser.has_partial


def test_blank_lines_without_data_dispatch_nothing() -> None:
    """A blank line with no data dispatches nothing and forgets the event type."""
    assert parse_all([b"event: a\n\n\ndata: x\n\n"]) == [SSEEvent(None, "x")]


def test_id_retry_and_unknown_fields_are_ignored() -> None:
    """``id``, ``retry`` and unknown fields do not change the event."""
    assert parse_all([b"id: 7\nretry: 10\nfoo: bar\ndata: x\n\n"]) == [SSEEvent(None, "x")]


def test_leading_bom_is_stripped() -> None:
    """A UTF-8 byte-order mark at the start of the stream is ignored."""
    assert parse_all([b"\xef\xbb", b"\xbfdata: x\n\n"]) == [SSEEvent(None, "x")]


def test_empty_data_line_dispatches_empty_string() -> None:
    """A bare ``data`` line dispatches an event whose data is empty."""
    assert parse_all([b"data\n\n", b"data:\n\n"]) == [SSEEvent(None, ""), SSEEvent(None, "")]


def test_encode_event_shape() -> None:
    """An event frame is the type line, one compact JSON data line and a blank line."""
    frame = encode_event("message_stop", {"type": "message_stop", "é": [1, 2]})
    assert frame == 'event: message_stop\ndata: {"type":"message_stop","é":[1,2]}\n\n'.encode()


def test_encode_event_rejects_line_breaks_in_type() -> None:
    """An event type with a line break cannot be framed."""
    with pytest.raises(ValueError, match="line break"):
        encode_event("a\nb", {})


def test_encode_data_done_and_comment() -> None:
    """Data frames, the DONE marker and comments have their wire shapes."""
    assert encode_data({"a": None}) == b'data: {"a":null}\n\n'
    assert DONE == b"data: [DONE]\n\n"
    assert comment("keep-alive") == b": keep-alive\n\n"
    assert comment("a\nb") == b": a\n: b\n\n"
    assert parse_all([comment("a\r\nb") + DONE]) == [SSEEvent(None, "[DONE]")]


def test_lone_surrogate_is_escaped() -> None:
    """A lone surrogate in a string is escaped rather than failing the encode."""
    frame = encode_data({"t": "a\ud800b"})
    assert frame == b'data: {"t":"a\\ud800b"}\n\n'
    assert json.loads(parse_all([frame])[0].data) == {"t": "a\ud800b"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
names = st.sampled_from(["message_start", "content_block_delta", "ping", "custom-event"])


@given(st.lists(st.tuples(names, st.dictionaries(st.text(), json_values, max_size=4)), max_size=6))
def test_encode_then_parse_round_trips(frames: list[tuple[str, dict[str, object]]]) -> None:
    """Encoded events parse back to the same types and JSON values."""
    raw = b"".join(encode_event(name, data) for name, data in frames)
    events = parse_all([raw])
    assert [(e.event, json.loads(e.data)) for e in events] == frames


line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]))
field_lines = st.one_of(
    st.builds(lambda t: "data: " + t, line_text),
    st.builds(lambda t: "data:" + t, line_text),
    st.builds(lambda t: "event: " + t, line_text),
    st.builds(lambda t: ": " + t, line_text),
    st.just("id: 3"),
    st.just(""),
)


@given(
    st.lists(field_lines, max_size=20),
    st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1),
    st.lists(st.integers(min_value=0), max_size=30),
    st.booleans(),
)
def test_same_events_however_the_bytes_are_split(
    lines: list[str], eols: list[str], cuts: list[int], comments: bool
) -> None:
    """Any split of the bytes, with any mix of line endings, gives the same events."""
    text = "".join(line + eols[i % len(eols)] for i, line in enumerate(lines))
    raw = text.encode()
    whole = parse_all([raw], comments=comments)
    assert parse_all(split_at(raw, cuts), comments=comments) == whole
    assert parse_all([raw[i : i + 1] for i in range(len(raw))], comments=comments) == whole
    # With LF endings only, the events are the same, unless a CR line end is followed by an
    # empty line ending in LF: that "\r" + "\n" is one CRLF break, not two.
    ends = [eols[i % len(eols)] for i in range(len(lines))]
    fused = any(
        ends[i] == "\r" and lines[i + 1] == "" and ends[i + 1] == "\n"
        for i in range(len(lines) - 1)
    )
    if not fused:
        lf = "".join(line + "\n" for line in lines).encode()
        assert whole == parse_all([lf], comments=comments)
