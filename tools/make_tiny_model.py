"""Generate models/tiny-chat: a tiny random-weight Llama in ONNX, its tokenizer, and golden data.

Deterministic and offline: the byte-level BPE tokenizer is trained on CPython's own
``pydoc_data`` text, the weights come from a seeded generator, the graph from
``cortex.export.llama_onnx``, and ``golden.json`` from the independent numpy forward pass in
``tools/llama_reference.py`` plus a plain-Python ChatML formatter. The weights are untrained, so
the model talks nonsense; it exists to test the harness end to end.

Run: ``.venv/bin/python tools/make_tiny_model.py [--out models/tiny-chat]``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import llama_reference  # noqa: E402

from cortex.export.llama_onnx import LlamaConfig, build_decoder, weight_shapes  # noqa: E402
from cortex.export.model_files import save_model  # noqa: E402

SEED = 20240601
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MARKUP = ["<tool_call>", "</tool_call>", "<think>", "</think>"]
VOCAB = 4096
CONFIG = {
    "num_layers": 2,
    "hidden_size": 128,
    "num_heads": 4,
    "num_kv_heads": 2,
    "intermediate_size": 384,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
    "rms_eps": 1e-6,
    "tie_word_embeddings": True,
}
GOLDEN_PROMPTS = ["def fibonacci(n):", "The quick brown fox", "Hello"]
GOLDEN_STEPS = 16

# ChatML with Hermes-style tools, in the shape of Qwen2.5's template.
CHAT_TEMPLATE = """\
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n\
You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and \
arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n\
{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role not in ['system', 'user', 'assistant', 'tool'] %}
        {{- raise_exception('Unknown role: ' + message.role) }}
    {%- elif message.role == 'user' or (message.role == 'system' and not loop.first) \
or (message.role == 'assistant' and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant' }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' + tool_call.name + '", "arguments": ' }}
            {%- if tool_call.arguments is string %}
                {{- tool_call.arguments }}
            {%- else %}
                {{- tool_call.arguments | tojson }}
            {%- endif %}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name, é ok"}},
                "required": ["city"],
            },
        },
    }
]
CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi there!"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Say something about Python."},
]
TOOL_CHAT = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
]


def chatml_reference(messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None) -> str:
    """What CHAT_TEMPLATE must render, written without jinja (the golden's second opinion)."""
    out = []
    first_system = messages[0]["role"] == "system"
    if tools:
        system = messages[0]["content"] if first_system else "You are a helpful assistant."
        out.append(
            "<|im_start|>system\n" + system + "\n\n# Tools\n\nYou may call one or more functions "
            "to assist with the user query.\n\nYou are provided with function signatures within "
            "<tools></tools> XML tags:\n<tools>"
        )
        out.extend("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools)
        out.append(
            "\n</tools>\n\nFor each function call, return a json object with function name and "
            "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
            '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        )
    elif first_system:
        out.append("<|im_start|>system\n" + messages[0]["content"] + "<|im_end|>\n")
    for i, m in enumerate(messages):
        role = m["role"]
        if role == "system" and i == 0:
            continue
        if role == "tool":
            if i == 0 or messages[i - 1]["role"] != "tool":
                out.append("<|im_start|>user")
            out.append("\n<tool_response>\n" + m["content"] + "\n</tool_response>")
            if i == len(messages) - 1 or messages[i + 1]["role"] != "tool":
                out.append("<|im_end|>\n")
        elif role == "assistant" and m.get("tool_calls"):
            out.append("<|im_start|>assistant" + ("\n" + m["content"] if m["content"] else ""))
            for call in m["tool_calls"]:
                fn = call["function"]
                out.append(f'\n<tool_call>\n{{"name": "{fn["name"]}", "arguments": ')
                out.append(fn["arguments"] + "}\n</tool_call>")
            out.append("<|im_end|>\n")
        else:
            out.append(f"<|im_start|>{role}\n{m['content']}<|im_end|>\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)


def train_tokenizer() -> Any:
    """A byte-level BPE of VOCAB tokens trained on CPython's pydoc topics."""
    import pydoc_data.topics

    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(MARKUP),
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP])
    return tokenizer


def init_weights(config: LlamaConfig) -> dict[str, np.ndarray]:
    """Seeded random weights: linears ~ N(0, 1/fan_in), norms near 1, embeddings ~ N(0, 0.3)."""
    rng = np.random.default_rng(SEED)
    weights = {}
    for name, shape in weight_shapes(config).items():
        if name == "model.embed_tokens.weight":
            value = rng.normal(0.0, 0.3, shape)
        elif len(shape) == 1:
            value = 1.0 + rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, shape[1] ** -0.5, shape)
        weights[name] = value.astype(np.float32)
    return weights


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "models" / "tiny-chat"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer()
    tokenizer.save(str(out / "tokenizer.json"))
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL + MARKUP}
    config = LlamaConfig(vocab_size=vocab, **CONFIG)  # type: ignore[arg-type]
    weights = init_weights(config)
    save_model(build_decoder(config, weights), str(out))

    hf = config.to_hf() | {"bos_token_id": None, "eos_token_id": ids["<|endoftext|>"]}
    write_json(out / "config.json", hf)
    generation = {"eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]], "do_sample": False}
    write_json(out / "generation_config.json", generation)
    added = {str(ids[t]): {"content": t, "special": t in SPECIAL, "normalized": False} for t in ids}
    write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": config.max_position_embeddings,
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "added_tokens_decoder": added,
        },
    )
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")

    golden: dict[str, Any] = {"greedy": [], "template": {}}
    for text in GOLDEN_PROMPTS:
        prompt = tokenizer.encode(text, add_special_tokens=False).ids
        logits = llama_reference.forward(config, weights, prompt)[-1]
        top = np.argsort(-logits)[:8]
        golden["greedy"].append(
            {
                "prompt": text,
                "prompt_ids": prompt,
                "ids": llama_reference.greedy(config, weights, prompt, GOLDEN_STEPS),
                "top_ids": [int(i) for i in top],
                "top_logits": [round(float(logits[i]), 6) for i in top],
                "logits_sum": round(float(logits.sum()), 6),
            }
        )
    golden["template"] = {
        "chat": {"messages": CHAT, "tools": None, "text": chatml_reference(CHAT, None)},
        "tools": {
            "messages": TOOL_CHAT,
            "tools": TOOLS,
            "text": chatml_reference(TOOL_CHAT, TOOLS),
        },
    }
    write_json(out / "golden.json", golden)
    print(f"wrote {out}: vocab {vocab}, {sum(w.size for w in weights.values())} parameters")


if __name__ == "__main__":
    main()
