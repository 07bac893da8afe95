"""Incremental detokenisation never splits a UTF-8 character across chunks."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from cortex_onnx.detok import IncrementalDecoder
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer

from tests.neuron.onnxtiny import TINY

safe_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\ufffd"))


@given(safe_text, st.data())
def test_byte_tokens_stream_whole_characters(text: str, data: st.DataObject) -> None:
    """Any split of the UTF-8 bytes into tokens streams back the text, no chunk holding U+FFFD."""
    raw = text.encode("utf-8")
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(raw) - 1)))) | {0, len(raw)})
    vocab = [raw[a:b] for a, b in itertools.pairwise(cuts) if b > a]

    def decode(ids: Sequence[int]) -> str:
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")

    decoder = IncrementalDecoder(decode)
    chunks = [decoder.push(i) for i in range(len(vocab))] + [decoder.flush()]
    assert "".join(chunks) == text
    assert not any("\ufffd" in chunk for chunk in chunks)


def test_real_tokenizer_streams_multibyte_text() -> None:
    """The tiny model's byte-level tokenizer streams emoji and accents back intact."""
    tokenizer = Tokenizer.from_file(str(TINY / "tokenizer.json"))
    text = "Café 😀 naïve — 東京 done"
    ids = tokenizer.encode(text).ids
    assert len(ids) > len(text.split())  # the multi-byte characters span several tokens

    decoder = IncrementalDecoder(lambda xs: tokenizer.decode(list(xs)))
    chunks = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(chunks) == text
    assert not any("\ufffd" in chunk for chunk in chunks)


def test_incomplete_trailing_character_is_held_until_flush() -> None:
    """Half a character is held back; flushing releases it as a replacement character."""
    vocab = [b"a", "€".encode()[:2]]
    decoder = IncrementalDecoder(
        lambda ids: b"".join(vocab[i] for i in ids).decode(errors="replace")
    )
    assert decoder.push(0) == "a"
    assert decoder.push(1) == ""
    assert decoder.flush() == "\ufffd"
