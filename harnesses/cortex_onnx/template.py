"""Render a chat template the way transformers' ``apply_chat_template`` does. Pure but for
``strftime_now``, which reads the clock as templates expect.

jinja2's ``ImmutableSandboxedEnvironment`` with ``trim_blocks`` and ``lstrip_blocks``, the
``loopcontrols`` extension, a ``tojson`` filter that keeps non-ASCII, and the globals
``raise_exception`` and ``strftime_now``. jinja2 is imported on first use.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cortex.harness import HarnessError


class TemplateRaised(Exception):
    """The template called ``raise_exception``."""


def _raise_exception(message: str) -> None:
    raise TemplateRaised(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> Any:
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise HarnessError(f"the model's chat template does not compile: {e}") from None


def render_chat(
    source: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    bos_token: str | None = None,
    eos_token: str | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text for ``messages``; a template error is a 400 that quotes it."""
    import jinja2

    template = _compile(source)
    try:
        text: str = template.render(
            messages=normalize_messages(messages),
            tools=list(tools) if tools else None,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token or "",
            eos_token=eos_token or "",
        )
    except TemplateRaised as e:
        raise HarnessError(f"chat template refused the request: {e}") from None
    except (jinja2.TemplateError, TypeError, KeyError, AttributeError) as e:
        raise HarnessError(f"chat template failed on these messages: {e}") from None
    return text


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages as templates expect them: text parts joined into one string, tool-call
    arguments parsed from JSON text into objects. Non-text parts are a 400."""
    out = []
    for index, message in enumerate(messages):
        m = dict(message)
        content = m.get("content")
        if isinstance(content, list):
            texts = []
            for part in content:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                if kind != "text":
                    raise HarnessError(
                        f"messages[{index}].content has a {kind!r} part; this model reads text only"
                    )
                texts.append(str(part.get("text", "")))
            m["content"] = "".join(texts)
        if m.get("tool_calls"):
            m["tool_calls"] = [_parsed_call(call) for call in m["tool_calls"]]
        out.append(m)
    return out


def _parsed_call(call: Any) -> Any:
    if not isinstance(call, Mapping) or not isinstance(call.get("function"), Mapping):
        return call
    function = dict(call["function"])
    if isinstance(function.get("arguments"), str):
        with contextlib.suppress(ValueError):  # else left as text: a template may print it
            function["arguments"] = json.loads(function["arguments"])
    return {**call, "function": function}
