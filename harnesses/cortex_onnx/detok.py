"""Incremental detokenisation that never emits part of a UTF-8 character. Pure.

The prefix/read-offset scheme of Hugging Face's text-generation-inference: re-decode a short
window of recent ids and emit only the new text, and hold it back while it ends in U+FFFD (an
incomplete byte sequence). Works for byte-level BPE and SentencePiece tokenizers alike, because
the window keeps the left context that decides leading spaces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]
REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Feed token ids one at a time; get back text that is safe to send."""

    def __init__(self, decode: Decode) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # end of what has been emitted

    def push(self, token_id: int) -> str:
        """Add one id; return the newly completed text (often ``""``)."""
        self._ids.append(token_id)
        seen = self._decode(self._ids[self._prefix : self._read])
        text = self._decode(self._ids[self._prefix :])
        if len(text) > len(seen) and not text.endswith(REPLACEMENT):
            self._prefix, self._read = self._read, len(self._ids)
            return text[len(seen) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held (an incomplete character decodes as U+FFFD)."""
        seen = self._decode(self._ids[self._prefix : self._read])
        text = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return text[len(seen) :]
