"""Stop strings cut the stream wherever the chunk boundaries fall."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from cortex_onnx.stops import StopMatcher
from hypothesis import given
from hypothesis import strategies as st

small = st.text(alphabet="abc\u00e9", max_size=30)


def expected(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """The first stop to end in the text (ties: the longest), and the text before it."""
    found = [(text.find(s) + len(s), -len(s), s) for s in stops if s and s in text]
    if not found:
        return text, None
    end, negative, stop = min(found)
    return text[: end + negative], stop


def run(chunks: Sequence[str], stops: Sequence[str]) -> tuple[str, str | None]:
    matcher = StopMatcher(stops)
    out = [matcher.feed(chunk) for chunk in chunks]
    if matcher.matched is None:
        out.append(matcher.flush())
    return "".join(out), matcher.matched


@given(
    small, st.lists(st.text(alphabet="abc\u00e9", min_size=1, max_size=4), max_size=3), st.data()
)
def test_stop_matching_does_not_depend_on_chunking(
    text: str, stops: list[str], data: st.DataObject
) -> None:
    """However the text is split, the output is the text up to the first stop, stop excluded."""
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)))) | {0, len(text)})
    chunks = [text[a:b] for a, b in itertools.pairwise(cuts)]
    assert run(chunks, stops) == expected(text, stops)


def test_partial_stop_is_held_back_then_released() -> None:
    """Text that may begin a stop is held, and released once it cannot."""
    matcher = StopMatcher(["</end>"])
    assert matcher.feed("Hello </e") == "Hello "
    assert matcher.feed("x") == "</ex"
    assert matcher.matched is None


def test_text_after_a_stop_is_dropped() -> None:
    """Once a stop matched, nothing more is emitted."""
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("ab ST") == "ab "
    assert matcher.feed("OP tail") == ""
    assert matcher.feed("more") == ""
    assert matcher.matched == "STOP"
