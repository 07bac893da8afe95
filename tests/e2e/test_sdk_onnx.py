"""Both official SDKs against a gateway whose neuron runs the real ONNX tiny model.

The tiny model's words are random, so these check structure, not text: every
frame parses, usage adds up, counts are exact, and the SDK helpers complete.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from anthropic import AsyncAnthropic
from openai import AsyncOpenAI
from tokenizers import Tokenizer

from tests.fleet import REPO, RunningGateway, start_gateway, start_neuron

TINY = '[[models]]\nid = "tiny"\nsource = "tiny-chat"\nharness = "onnx"\nvram_mb = 64\n'
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@contextlib.asynccontextmanager
async def onnx_fleet() -> AsyncIterator[RunningGateway]:
    models = os.path.join(REPO, "models")
    async with start_neuron(models_dir=models, default_harness="onnx") as neuron:
        async with start_gateway([neuron], TINY) as gw:
            yield gw


async def test_openai_sdk_chat_and_stream_on_the_onnx_model() -> None:
    """Non-streamed and streamed chat complete with usage, through the .stream() helper too."""
    async with onnx_fleet() as gw:
        sdk = AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
        plain = await sdk.chat.completions.create(
            model="tiny",
            messages=QUESTION,
            max_tokens=8,
            temperature=0,
        )
        chunks = [
            c
            async for c in await sdk.chat.completions.create(
                model="tiny",
                messages=QUESTION,
                max_tokens=8,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
        helper_text = ""
        async with sdk.chat.completions.stream(
            model="tiny",
            messages=QUESTION,
            max_tokens=8,
            temperature=0,
        ) as stream:
            async for event in stream:  # (get_final_completion refuses a length-cut answer)
                if event.type == "content.delta":
                    helper_text += event.delta
        await sdk.close()
    assert plain.choices[0].finish_reason == "length"
    assert plain.usage is not None and plain.usage.completion_tokens == 8
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain.choices[0].message.content  # greedy: the same text either way
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    assert helper_text == plain.choices[0].message.content


async def test_anthropic_sdk_messages_stream_and_count_tokens_on_the_onnx_model() -> None:
    """Messages stream and not with the same greedy text; count_tokens is the exact prompt."""
    async with onnx_fleet() as gw:
        sdk = AsyncAnthropic(base_url=gw.url, api_key="k", max_retries=0)
        greedy = {"temperature": 0}
        plain = await sdk.messages.create(
            model="tiny",
            max_tokens=8,
            messages=QUESTION,
            extra_body=greedy,
        )
        async with sdk.messages.stream(
            model="tiny",
            max_tokens=8,
            messages=QUESTION,
            extra_body=greedy,
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        counted = await sdk.messages.count_tokens(model="tiny", messages=QUESTION)
        await sdk.close()
    assert plain.stop_reason == "max_tokens" and plain.usage.output_tokens == 8
    assert plain.content[0].type == "text"
    assert text == plain.content[0].text == final.content[0].text
    assert final.usage.output_tokens == 8
    tokenizer = Tokenizer.from_file(os.path.join(REPO, "models", "tiny-chat", "tokenizer.json"))
    rendered = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    assert counted.input_tokens == len(tokenizer.encode(rendered, add_special_tokens=False).ids)
    assert (
        plain.usage.input_tokens + (plain.usage.cache_read_input_tokens or 0)
        == counted.input_tokens
    )
