"""Harness events -> OpenAI chat/completions wire format (SPEC section 5). Pure.

One ``ChunkWriter`` per response: it makes the stream's bytes (role chunk first,
a final chunk with ``finish_reason`` and ``usage``, an optional usage-only chunk,
``[DONE]``) or, for non-streaming, the whole body from the collected events.
"""

from __future__ import annotations

import json
from typing import Any

from cortex.harness import Finish, TextDelta, ToolCall

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def _frame(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def usage_of(finish: Finish) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
    }
    if finish.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": finish.cached_tokens}
    return usage


class ChunkWriter:
    """Wire frames for one response; ``chat`` selects chat vs legacy completions."""

    def __init__(self, *, completion_id: str, created: int, model: str, chat: bool) -> None:
        self.chat = chat
        self._head = {
            "id": completion_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": model,
        }
        self._tool_calls = 0

    def _chunk(self, choice: dict[str, Any], **extra: Any) -> bytes:
        return _frame({**self._head, "choices": [{"index": 0, **choice}], **extra})

    def role(self, prompt_tokens: int | None) -> bytes:
        """The first chunk, sent at once; carries prompt usage when already known."""
        if not self.chat:
            return b""
        extra: dict[str, Any] = {}
        if prompt_tokens is not None:
            extra["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 0,
                "total_tokens": prompt_tokens,
            }
        delta = {"role": "assistant", "content": ""}
        return self._chunk({"delta": delta, "logprobs": None, "finish_reason": None}, **extra)

    def text(self, delta: TextDelta) -> bytes:
        if self.chat:
            return self._chunk(
                {"delta": {"content": delta.text}, "logprobs": None, "finish_reason": None}
            )
        return self._chunk({"text": delta.text, "logprobs": None, "finish_reason": None})

    def tool_call(self, call: ToolCall) -> bytes:
        index = self._tool_calls
        self._tool_calls += 1
        entry = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        return self._chunk(
            {"delta": {"tool_calls": [entry]}, "logprobs": None, "finish_reason": None}
        )

    def finish(self, finish: Finish, include_usage: bool) -> bytes:
        choice: dict[str, Any] = {"finish_reason": finish.reason, "logprobs": None}
        choice["delta" if self.chat else "text"] = {} if self.chat else ""
        if finish.stop_sequence is not None:
            choice["stop_reason"] = finish.stop_sequence  # vLLM's field: which stop matched
        out = self._chunk(choice, usage=usage_of(finish))
        if include_usage:
            out += _frame({**self._head, "choices": [], "usage": usage_of(finish)})
        return out + DONE

    def body(self, texts: list[str], calls: list[ToolCall], finish: Finish) -> dict[str, Any]:
        """The non-streaming response."""
        head = {**self._head, "object": "chat.completion" if self.chat else "text_completion"}
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish.reason, "logprobs": None}
        if finish.stop_sequence is not None:
            choice["stop_reason"] = finish.stop_sequence
        text = "".join(texts)
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in calls
                ]
            elif not text:
                message["content"] = ""
            choice["message"] = message
        else:
            choice["text"] = text
        return {**head, "choices": [choice], "usage": usage_of(finish)}
