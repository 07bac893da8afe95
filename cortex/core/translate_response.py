"""OpenAI chat completion -> Anthropic Messages response. Pure, except ``new_message_id``.

Shared with ``stream.py``: the stop-reason and usage mappings and tool-use ids, so a streamed
answer and a non-streamed one for the same completion are the same message.

Decisions where SPEC 3.5 is silent:

- A matched stop sequence is read from the neuron's vLLM-style ``choices[0].stop_reason``
  string; it maps to ``stop_sequence`` only when it is one of the request's ``stop_sequences``.
- Tool calls win over "stop": a message that carries tool calls ends with ``tool_use``
  (some servers report "stop" for them). "content_filter" maps to ``refusal``.
- ``input_tokens`` excludes cached prompt tokens, which go to ``cache_read_input_tokens``
  (Anthropic counts them apart; OpenAI's ``prompt_tokens`` includes them).
- A tool call without an id gets ``toolu_<message id suffix>_<n>``: stable for the same input.
- Arguments that are not a JSON object are carried as ``{"_raw": "<text>"}`` so the client's
  tool validation reports it to the model, instead of failing the whole answer.
- ``reasoning_content`` is ignored.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from cortex.errors import UpstreamFailed

_FINISH = {"length": "max_tokens", "content_filter": "refusal"}
_TOOL_FINISH = frozenset({"tool_calls", "function_call"})


def new_message_id() -> str:
    """A fresh random ``msg_…`` id (the one impure helper; the shell calls it)."""
    return "msg_" + secrets.token_hex(12)


def tool_use_id(message_id: str, index: int) -> str:
    """The id given to the ``index``-th tool call when the neuron sent none."""
    return f"toolu_{message_id.removeprefix('msg_')}_{index}"


def stop_reason(
    finish_reason: Any, matched: Any, has_tool_calls: bool, stop_sequences: Sequence[str]
) -> tuple[str, str | None]:
    """The Anthropic (stop_reason, stop_sequence) for an OpenAI finish."""
    if finish_reason in _FINISH:
        return _FINISH[finish_reason], None
    if finish_reason == "stop" and isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence", matched
    if has_tool_calls or finish_reason in _TOOL_FINISH:
        return "tool_use", None
    return "end_turn", None


def usage(openai_usage: Any) -> dict[str, int]:
    """Anthropic usage from an OpenAI usage object (or None: zeros)."""
    if not isinstance(openai_usage, Mapping):
        return {"input_tokens": 0, "output_tokens": 0}
    prompt = _count(openai_usage.get("prompt_tokens"))
    out = {"input_tokens": prompt, "output_tokens": _count(openai_usage.get("completion_tokens"))}
    details = openai_usage.get("prompt_tokens_details")
    if isinstance(details, Mapping) and details.get("cached_tokens") is not None:
        cached = _count(details["cached_tokens"])
        out["input_tokens"] = max(prompt - cached, 0)
        out["cache_read_input_tokens"] = cached
    return out


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def tool_input(arguments: Any) -> Any:
    """The ``input`` object for OpenAI ``function.arguments`` text."""
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return {"_raw": arguments}
    return parsed if isinstance(parsed, dict) else {"_raw": arguments}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # a parts list, from servers that send one
        return "".join(p.get("text") or "" for p in content if isinstance(p, Mapping))
    return ""


def openai_to_anthropic(
    response: Mapping[str, Any],
    *,
    model: str,
    stop_sequences: Sequence[str] = (),
    message_id: str | None = None,
) -> dict[str, Any]:
    """The Anthropic message for a non-streaming OpenAI chat completion.

    ``message_id`` should come from ``new_message_id()``; without one the id is derived
    from the upstream completion id, so the function stays pure. A completion that is not
    shaped like one raises ``UpstreamFailed`` (502).
    """
    try:
        return _message(response, model, stop_sequences, message_id)
    except (AttributeError, TypeError, KeyError, IndexError) as exc:
        raise UpstreamFailed("malformed chat completion from the neuron") from exc


def _message(
    response: Mapping[str, Any], model: str, stop_sequences: Sequence[str], message_id: str | None
) -> dict[str, Any]:
    if message_id is None:
        upstream = str(response.get("id") or "0").removeprefix("chatcmpl-")
        message_id = "msg_" + "".join(c if c.isalnum() else "_" for c in upstream)
    choices = response.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], Mapping) else {}
    message = choice.get("message")
    message = message if isinstance(message, Mapping) else {}
    content: list[dict[str, Any]] = []
    text = _text(message.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls") or ()
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        block_id = call.get("id") or tool_use_id(message_id, n)
        name = function.get("name") or ""
        block = {"type": "tool_use", "id": block_id, "name": name}
        block["input"] = tool_input(function.get("arguments"))
        content.append(block)
    reason, sequence = stop_reason(
        choice.get("finish_reason"),
        choice.get("stop_reason"),
        bool(calls),
        stop_sequences,
    )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(response.get("usage")),
    }
