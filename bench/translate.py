"""CPU per streamed chunk on /v1/messages: SSE parse alone vs parse + translate + encode.

Run: .venv/bin/python bench/translate.py   (a few seconds; best of several repeats)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from cortex.core.sse import SSEParser, encode_data, encode_event
from cortex.core.stream import AnthropicStreamTranslator

CHUNKS = 2000
REPEATS = 7


def neuron_frames(n: int, tools: bool) -> list[bytes]:
    """One network read per frame, shaped like a neuron's stream (SPEC 5)."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    usage = {"prompt_tokens": 42, "completion_tokens": 0, "total_tokens": 42}
    role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    frames = [encode_data({**base, "choices": [role], "usage": usage})]
    for i in range(n):
        if tools and i >= n // 2:
            call = {"index": 0, "function": {"arguments": f'"k{i}": "v", '}}
            if i == n // 2:
                call.update(id="call_1", type="function", function={"name": "f", "arguments": "{"})
            delta: dict[str, object] = {"tool_calls": [call]}
        else:
            delta = {"content": f" word{i}"}
        frames.append(encode_data({**base, "choices": [{"index": 0, "delta": delta}]}))
    final = {"index": 0, "delta": {}, "finish_reason": "stop"}
    done_usage = {**usage, "completion_tokens": n, "total_tokens": 42 + n}
    frames.append(encode_data({**base, "choices": [final], "usage": done_usage}))
    frames.append(b"data: [DONE]\n\n")
    return frames


def parse_only(frames: list[bytes]) -> int:
    parser = SSEParser()
    count = 0
    for frame in frames:
        count += len(parser.feed(frame))
    return count


def parse_and_decode(frames: list[bytes]) -> int:
    parser = SSEParser()
    count = 0
    for frame in frames:
        for event in parser.feed(frame):
            if event.data != "[DONE]":
                json.loads(event.data)
                count += 1
    return count


def parse_translate_encode(frames: list[bytes]) -> int:
    parser = SSEParser()
    translator = AnthropicStreamTranslator(model="m", message_id="msg_bench")
    size = 0
    for frame in frames:
        for event in parser.feed(frame):
            if event.data == "[DONE]":
                out = translator.finish()
            else:
                out = translator.feed(json.loads(event.data))
            for name, data in out:
                size += len(encode_event(name, data))
    return size


def best_us_per_chunk(work: Callable[[list[bytes]], int], frames: list[bytes]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.process_time()
        work(frames)
        best = min(best, time.process_time() - start)
    return best / len(frames) * 1e6


def main() -> None:
    print(f"{'stream':<12}{'SSE parse':>12}{'+ json':>12}{'+ translate + encode':>24}   µs/chunk")
    for name, tools in (("text", False), ("text+tool", True)):
        frames = neuron_frames(CHUNKS, tools)
        figures = [
            best_us_per_chunk(work, frames)
            for work in (parse_only, parse_and_decode, parse_translate_encode)
        ]
        print(f"{name:<12}{figures[0]:>12.2f}{figures[1]:>12.2f}{figures[2]:>24.2f}")


if __name__ == "__main__":
    main()
