"""Anthropic Messages request -> OpenAI chat request for a neuron. Pure: dicts in, dicts out.

Decisions where SPEC 3.5 is silent:

- All system text (top-level ``system``, then every ``role: "system"`` turn, in order) becomes
  ONE leading system message; pieces and text blocks join with a blank line ("\\n\\n").
- A turn whose blocks are all text becomes a string; with an image it becomes a parts list.
- ``tool_result`` blocks become ``role: "tool"`` messages first; the rest of that user turn
  follows as one user message. ``is_error: true`` prefixes the content with "Error: ".
  Images inside a tool result (OpenAI tool messages carry text only) move to that following
  user message, and the tool message says so.
- ``thinking`` / ``redacted_thinking`` blocks are dropped: a local model cannot use them.
- ``document`` blocks with a text (or text-block ``content``) source become text; other
  sources are a 400.
- Server tools (a ``type`` other than "custom") are dropped: a local model cannot run them.
- Unknown top-level fields and unknown keys in blocks and tools are ignored; a 400 names the
  field path of anything that cannot be represented (an unknown role or block type, a wrong type).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cortex.errors import BadRequest

JOIN = "\n\n"
DEFAULT_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}
_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _bad(path: str, what: str) -> BadRequest:
    return BadRequest(f"{path}: {what}", param=path)


def _expect(value: Any, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _bad(path, f"expected {what}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _bad(path, "expected a string")
    return value


def _text_of(block: Mapping[str, Any], path: str) -> str:
    """The text a text or document block stands for."""
    if block.get("type") == "text":
        return _string(block.get("text"), f"{path}.text")
    source = _expect(block.get("source"), Mapping, f"{path}.source", "an object")
    kind = source.get("type")
    if kind == "text":
        return _string(source.get("data"), f"{path}.source.data")
    if kind == "content":
        return _plain_text(source.get("content"), f"{path}.source.content", " in a document")
    raise _bad(f"{path}.source.type", f"unsupported document source {kind!r} (text only)")


def _image_part(block: Mapping[str, Any], path: str) -> dict[str, Any]:
    source = _expect(block.get("source"), Mapping, f"{path}.source", "an object")
    kind = source.get("type")
    if kind == "base64":
        media = _string(source.get("media_type"), f"{path}.source.media_type")
        data = _string(source.get("data"), f"{path}.source.data")
        url = f"data:{media};base64,{data}"
    elif kind == "url":
        url = _string(source.get("url"), f"{path}.source.url")
    else:
        raise _bad(f"{path}.source.type", f"unsupported image source {kind!r}")
    return {"type": "image_url", "image_url": {"url": url}}


def _blocks(content: Any, path: str) -> list[Mapping[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    content = _expect(content, list, path, "a string or a list of content blocks")
    return [
        _expect(b, Mapping, f"{path}[{i}]", "a content block object") for i, b in enumerate(content)
    ]


def _unsupported(kind: Any, path: str, where: str) -> BadRequest:
    return _bad(f"{path}.type", f"unsupported block type {kind!r}{where}")


def _plain_text(content: Any, path: str, where: str) -> str:
    """The joined text of a string or a list of text blocks (system prompts, documents)."""
    texts = []
    for i, block in enumerate(_blocks(content, path)):
        if block.get("type") != "text":
            raise _unsupported(block.get("type"), f"{path}[{i}]", where)
        texts.append(_text_of(block, f"{path}[{i}]"))
    return JOIN.join(texts)


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A string when every part is text, else the parts list."""
    if all(p["type"] == "text" for p in parts):
        return JOIN.join(p["text"] for p in parts)
    return parts


def _tool_result(
    block: Mapping[str, Any], path: str, images: list[dict[str, Any]]
) -> dict[str, Any]:
    call_id = _string(block.get("tool_use_id"), f"{path}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    if content is not None:
        for i, inner in enumerate(_blocks(content, f"{path}.content")):
            kind = inner.get("type")
            if kind in ("text", "document"):
                texts.append(_text_of(inner, f"{path}.content[{i}]"))
            elif kind == "image":
                images.append(_image_part(inner, f"{path}.content[{i}]"))
                texts.append("[image attached in the next user message]")
            else:
                raise _unsupported(kind, f"{path}.content[{i}]", " in a tool result")
    text = JOIN.join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _user(content: Any, path: str, out: list[dict[str, Any]]) -> None:
    parts: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    has_results = False
    for i, block in enumerate(_blocks(content, path)):
        kind, where = block.get("type"), f"{path}[{i}]"
        if kind == "tool_result":
            out.append(_tool_result(block, where, images))
            has_results = True
        elif kind in ("text", "document"):
            parts.append({"type": "text", "text": _text_of(block, where)})
        elif kind == "image":
            parts.append(_image_part(block, where))
        else:
            raise _unsupported(kind, where, " in a user turn")
    parts = images + parts
    if parts or not has_results:
        out.append({"role": "user", "content": _content(parts)})


def _assistant(content: Any, path: str, out: list[dict[str, Any]]) -> None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, path)):
        kind, where = block.get("type"), f"{path}[{i}]"
        if kind == "text":
            texts.append(_text_of(block, where))
        elif kind == "tool_use":
            call_id = _string(block.get("id"), f"{where}.id")
            name = _string(block.get("name"), f"{where}.name")
            args = _expect(block.get("input", {}), Mapping, f"{where}.input", "an object")
            function = {"name": name, "arguments": _compact.encode(args)}
            calls.append({"id": call_id, "type": "function", "function": function})
        elif kind not in _DROPPED_BLOCKS:
            raise _unsupported(kind, where, " in an assistant turn")
    message: dict[str, Any] = {"role": "assistant", "content": JOIN.join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    out.append(message)


def translate_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The OpenAI ``messages`` for an Anthropic body's ``system`` and ``messages``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "expected a non-empty list of messages")
    system: list[str] = []
    if body.get("system") is not None:
        system.append(_plain_text(body["system"], "system", " in system content"))
    out: list[dict[str, Any]] = []
    for i, item in enumerate(messages):
        path = f"messages[{i}]"
        message = _expect(item, Mapping, path, "a message object")
        role, content = message.get("role"), message.get("content")
        if role == "user":
            _user(content, f"{path}.content", out)
        elif role == "assistant":
            _assistant(content, f"{path}.content", out)
        elif role == "system":
            system.append(_plain_text(content, f"{path}.content", " in system content"))
        else:
            raise _bad(f"{path}.role", f"unsupported role {role!r}")
    if system:
        out.insert(0, {"role": "system", "content": JOIN.join(system)})
    return out


def translate_tools(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OpenAI function tools for the body's ``tools``; server tools are dropped."""
    tools = _expect(body.get("tools") or [], list, "tools", "a list of tools")
    out = []
    for i, item in enumerate(tools):
        tool = _expect(item, Mapping, f"tools[{i}]", "a tool object")
        if tool.get("type", "custom") not in ("custom", None):
            continue  # a server tool (web_search_20250305, ...): nothing here can run it
        name = _string(tool.get("name"), f"tools[{i}].name")
        schema = tool.get("input_schema") or DEFAULT_SCHEMA
        function = {
            "name": name,
            "parameters": _expect(schema, Mapping, f"tools[{i}].input_schema", "an object"),
        }
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    choice = _expect(choice, Mapping, "tool_choice", "an object")
    kind = choice.get("type")
    if kind == "tool":
        name = _string(choice.get("name"), "tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif kind in _TOOL_CHOICE:
        out["tool_choice"] = _TOOL_CHOICE[kind]
    else:
        raise _bad("tool_choice.type", f"unsupported tool choice {kind!r}")
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False


def anthropic_to_openai(body: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI chat request a neuron receives for an Anthropic Messages body."""
    body = _expect(body, Mapping, "body", "a JSON object")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _bad("max_tokens", "required")
    if _expect(max_tokens, int, "max_tokens", "an integer") < 1:
        raise _bad("max_tokens", "must be at least 1")
    out: dict[str, Any] = {"model": _string(body.get("model"), "model")}
    out["messages"] = translate_messages(body)
    out["max_tokens"] = max_tokens
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = _expect(body[key], (int, float), key, "a number")
    if body.get("top_k") is not None:
        out["top_k"] = _expect(body["top_k"], int, "top_k", "an integer")
    stops = body.get("stop_sequences")
    if stops:
        stops = _expect(stops, list, "stop_sequences", "a list of strings")
        for i, stop in enumerate(stops):
            _string(stop, f"stop_sequences[{i}]")
        out["stop"] = list(stops)
    tools = translate_tools(body)
    if tools:
        out["tools"] = tools
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], out)
    if _expect(body.get("stream", False), bool, "stream", "a boolean"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def anthropic_count_tokens_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The neuron ``/tokenize`` body (model, messages, tools) for a count_tokens body."""
    body = _expect(body, Mapping, "body", "a JSON object")
    out: dict[str, Any] = {"model": _string(body.get("model"), "model")}
    out["messages"] = translate_messages(body)
    tools = translate_tools(body)
    if tools:
        out["tools"] = tools
    return out
