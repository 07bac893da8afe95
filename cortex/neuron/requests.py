"""Validation of OpenAI request bodies into ``GenerationRequest`` values. Pure.

Every rejection is a ``BadRequest`` naming the field, so a client learns what to
fix; fields the neuron does not use ride along unread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cortex.errors import BadRequest
from cortex.harness import GenerationRequest

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _number(body: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{key} must be a number", param=key)
    if not low <= value <= high:
        raise BadRequest(f"{key} must be between {low} and {high}", param=key)
    return float(value)


def _integer(body: Mapping[str, Any], key: str, low: int = 0) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key} must be an integer", param=key)
    if value < low:
        raise BadRequest(f"{key} must be at least {low}", param=key)
    return value


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return tuple(s for s in stop if s)
    raise BadRequest("stop must be a string or a list of strings", param="stop")


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = message.get("role")
        if role not in _ROLES:
            raise BadRequest(f"messages[{i}].role {role!r} is not a known role", param="role")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequest(
                f"messages[{i}].content must be a string, a list of parts or null",
                param=f"messages[{i}].content",
            )
    return messages


def _common(body: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("model is required", param="model")
    n = _integer(body, "n", 1)
    if n not in (None, 1):
        raise BadRequest("only n = 1 is supported", param="n")
    max_tokens = _integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1)
    seed = _integer(body, "seed", -(2**63))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("stream_options must be an object", param="stream_options")
    return {
        "max_tokens": max_tokens,
        "temperature": _number(body, "temperature", 1.0, 0.0, 10.0),
        "top_p": _number(body, "top_p", 1.0, 0.0, 1.0),
        "top_k": int(_number(body, "top_k", 0, 0, 1_000_000)),
        "seed": seed,
        "stop": _stop(body),
    }


def parse_chat(body: Any, request_id: str = "") -> GenerationRequest:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    common = _common(body)
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("tools must be a list", param="tools")
    return GenerationRequest(
        messages=_messages(body),
        tools=tools or None,
        tool_choice=body.get("tool_choice"),
        request_id=request_id,
        **common,
    )


def parse_completion(body: Any, request_id: str = "") -> GenerationRequest:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    common = _common(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("prompt must be a string", param="prompt")
    return GenerationRequest(prompt=prompt, request_id=request_id, **common)


def parse_tokenize(
    body: Any,
) -> tuple[str, list[Mapping[str, Any]] | None, list[Any] | None, str | None]:
    """``/tokenize``'s body: (model, messages, tools, prompt), each checked like a chat's."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("model is required", param="model")
    messages = _messages(body) if body.get("messages") is not None else None
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("tools must be a list", param="tools")
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise BadRequest("prompt must be a string", param="prompt")
    if messages is None and prompt is None:
        raise BadRequest("messages or prompt is required", param="messages")
    return body["model"], messages, tools, prompt


def wants_usage_chunk(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))
