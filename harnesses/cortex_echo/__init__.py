"""Model-free, deterministic harness for tests, CI and client conformance (SPEC 1.4).

It echoes the last user text a word at a time; ``@@tool:NAME:{json}@@`` in the
last user turn makes it call that tool; a tool result as the last message makes
it answer ``TOOL_RESULT_SEEN: <result>``. Tokens are words. ``options.vram_mb``
is the memory it claims; ``options.delay_ms`` paces each token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from cortex.harness import (
    Finish,
    GenerationEvent,
    GenerationRequest,
    HarnessError,
    LoadSpec,
    TextDelta,
    Tokenized,
    ToolCall,
)

_WORDS = re.compile(r"\s*\S+\s*|\s+")
_TOOL = re.compile(r"@@tool:([A-Za-z0-9_.\-]+):(\{.*?\})@@", re.DOTALL)
EMBEDDING_DIM = 8


def text_of(content: Any) -> str:
    """The text of an OpenAI message content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def words(text: str) -> list[str]:
    return _WORDS.findall(text)


def count_words(
    messages: Sequence[Mapping[str, Any]] | None,
    tools: Sequence[Mapping[str, Any]] | None,
    prompt: str | None,
) -> int:
    parts = [text_of(m.get("content")) for m in messages or ()]
    parts += [json.dumps(t, sort_keys=True) for t in tools or ()]
    parts.append(prompt or "")
    return sum(len(text.split()) for text in parts)


def _reply(request: GenerationRequest) -> str | ToolCall:
    if request.prompt is not None:
        return request.prompt
    turns = [m for m in request.messages or () if m.get("role") not in ("system", "developer")]
    if not turns:
        return ""
    last = turns[-1]
    if last.get("role") == "tool":
        return f"TOOL_RESULT_SEEN: {text_of(last.get('content'))}"
    user = next((m for m in reversed(turns) if m.get("role") == "user"), None)
    text = text_of(user.get("content")) if user else ""
    marker = _TOOL.search(text) if last.get("role") == "user" else None
    if marker is not None:
        name, arguments = marker.group(1), marker.group(2)
        try:
            json.loads(arguments)
        except ValueError:
            return text
        digest = hashlib.sha256(f"{name}{arguments}{len(turns)}".encode()).hexdigest()[:24]
        return ToolCall(id=f"call_{digest}", name=name, arguments=arguments)
    return text


def _cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    found = [(text.find(s), s) for s in stops if s and s in text]
    if not found:
        return text, None
    index, stop = min(found)
    return text[:index], stop


class EchoModel:
    provider = "echo"

    def __init__(self, spec: LoadSpec) -> None:
        options = spec.options
        self.vram_used_mb = _int(options.get("vram_mb"))
        self.context_length = _int(options.get("context_length")) or 32768
        self.max_batch = _int(options.get("max_batch")) or 64
        self.delay_s = _int(options.get("delay_ms")) / 1000

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        prompt_tokens = count_words(request.messages, request.tools, request.prompt)
        yield Tokenized(prompt_tokens)
        reply = _reply(request)
        if isinstance(reply, ToolCall):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield reply
            yield Finish("tool_calls", prompt_tokens, len(reply.arguments.split()) + 1)
            return
        text, stop = _cut_at_stop(reply, request.stop)
        pieces = words(text)
        limit = request.max_tokens
        reason = "stop"
        if limit is not None and len(pieces) > limit:
            pieces, reason, stop = pieces[:limit], "length", None
        for piece in pieces:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield TextDelta(piece)
        yield Finish(reason, prompt_tokens, len(pieces), stop_sequence=stop)

    async def count_tokens(
        self,
        messages: Sequence[Mapping[str, Any]] | None,
        tools: Sequence[Mapping[str, Any]] | None,
        prompt: str | None,
    ) -> int:
        return count_words(messages, tools, prompt)

    async def embed(self, inputs: Sequence[str]) -> list[list[float]]:
        """A deterministic unit vector per text, so embedding clients can be tested."""
        vectors = []
        for text in inputs:
            digest = hashlib.sha256(text.encode()).digest()
            raw = [b - 127.5 for b in digest[:EMBEDDING_DIM]]
            norm = sum(v * v for v in raw) ** 0.5 or 1.0
            vectors.append([v / norm for v in raw])
        return vectors

    async def unload(self) -> None:
        return None


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise HarnessError(f"echo option must be a non-negative number, got {value!r}")
    return int(value)


class EchoHarness:
    name = "echo"

    def providers(self) -> list[str]:
        return []

    async def load(self, spec: LoadSpec) -> EchoModel:
        return EchoModel(spec)

    async def count_tokens(
        self,
        spec: LoadSpec,
        messages: Sequence[Mapping[str, Any]] | None,
        tools: Sequence[Mapping[str, Any]] | None,
        prompt: str | None,
    ) -> int:
        return count_words(messages, tools, prompt)
