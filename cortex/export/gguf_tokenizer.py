"""Turn a GGUF's ``tokenizer.*`` metadata into the files the harness reads: ``tokenizer.json``
(a ``tokenizers`` byte-level BPE), ``tokenizer_config.json`` and the chat template.

Pure: metadata dict in, JSON-able dicts and text out. Handles ``tokenizer.ggml.model`` "gpt2"
(byte-level BPE: GPT-2, SmolLM, Llama 3, Qwen2); the pre-tokenizer follows
``tokenizer.ggml.pre`` as llama.cpp names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cortex.export import ExportError

CONTROL, USER_DEFINED = 3, 4  # llama.cpp token types that become added tokens

GPT2_SPLIT = None  # ByteLevel's own regex
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# tokenizer.ggml.pre -> (split regex or None for ByteLevel's, digits one by one, NFC first)
PRE_TOKENIZERS: dict[str, tuple[str | None, bool, bool]] = {
    "gpt2": (GPT2_SPLIT, False, False),
    "default": (GPT2_SPLIT, False, False),
    "smollm": (GPT2_SPLIT, True, False),
    "starcoder": (GPT2_SPLIT, True, False),
    "llama-bpe": (LLAMA3_SPLIT, False, False),
    "llama3": (LLAMA3_SPLIT, False, False),
    "qwen2": (QWEN2_SPLIT, False, True),
}


class TokenizerError(ExportError):
    """The GGUF's tokenizer cannot be expressed as a ``tokenizers`` JSON here."""


@attrs.frozen
class TokenizerFiles:
    """What goes into the model folder, and a warning to print if any."""

    tokenizer: dict[str, Any]
    tokenizer_config: dict[str, Any]
    chat_template: str | None
    eos_token_ids: list[int]
    bos_token_id: int | None
    warning: str | None = None


def tokenizer_files(metadata: Mapping[str, Any], context_length: int) -> TokenizerFiles:
    """Build the tokenizer files from GGUF metadata."""
    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise TokenizerError(
            f"tokenizer.ggml.model is {kind!r}; only byte-level BPE ('gpt2': SmolLM, Llama 3, "
            "Qwen2) converts here. Use the Hugging Face checkpoint folder instead."
        )
    tokens: Sequence[str] = metadata["tokenizer.ggml.tokens"]
    types: Sequence[int] = metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in metadata.get("tokenizer.ggml.merges", [])]
    pre = str(metadata.get("tokenizer.ggml.pre", "gpt2"))
    warning = None
    if pre not in PRE_TOKENIZERS:
        warning = f"unknown tokenizer.ggml.pre {pre!r}: using GPT-2's pre-tokenizer"
        pre = "gpt2"

    def special(key: str) -> int | None:
        value = metadata.get(f"tokenizer.ggml.{key}_token_id")
        return int(value) if isinstance(value, int) and 0 <= value < len(tokens) else None

    bos, eos, pad, unk = special("bos"), special("eos"), special("padding"), special("unknown")
    eot = special("eot")
    add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    added = [
        {
            "id": i,
            "content": tokens[i],
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": types[i] == CONTROL,
        }
        for i in range(len(tokens))
        if types[i] in (CONTROL, USER_DEFINED)
    ]
    split, digits, nfc = PRE_TOKENIZERS[pre]
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"} if nfc else None,
        "pre_tokenizer": _pre_tokenizer(split, digits),
        "post_processor": _bos_template(tokens[bos], bos) if add_bos and bos is not None else None,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": True,
            "use_regex": True,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": pre in ("llama-bpe", "llama3"),
            "vocab": {token: i for i, token in enumerate(tokens)},
            "merges": [list(m) for m in merges],
        },
    }

    def text(index: int | None) -> str | None:
        return None if index is None else tokens[index]

    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": context_length,
        "bos_token": text(bos),
        "eos_token": text(eos),
        "pad_token": text(pad),
        "unk_token": text(unk),
        "add_bos_token": add_bos,
        "add_eos_token": bool(metadata.get("tokenizer.ggml.add_eos_token", False)),
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(t["id"]): {"content": t["content"], "special": t["special"], "normalized": False}
            for t in added
        },
    }
    template = metadata.get("tokenizer.chat_template")
    eos_ids = [i for i in (eos, eot) if i is not None]
    return TokenizerFiles(
        tokenizer=tokenizer,
        tokenizer_config=config,
        chat_template=template if isinstance(template, str) else None,
        eos_token_ids=list(dict.fromkeys(eos_ids)),
        bos_token_id=bos,
        warning=warning,
    )


def _pre_tokenizer(split: str | None, digits: bool) -> dict[str, Any]:
    byte_level = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": True,
        "use_regex": split is None,
    }
    steps: list[dict[str, Any]] = []
    if digits:
        steps.append({"type": "Digits", "individual_digits": True})
    if split is not None:
        steps.append(
            {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": False}
        )
    if not steps:
        return byte_level
    return {"type": "Sequence", "pretokenizers": [*steps, byte_level]}


def _bos_template(bos: str, bos_id: int) -> dict[str, Any]:
    """A post-processor that puts BOS in front, as ``add_bos_token`` asks."""
    seq = {"Sequence": {"id": "A", "type_id": 0}}
    token = {"SpecialToken": {"id": bos, "type_id": 0}}
    return {
        "type": "TemplateProcessing",
        "single": [token, seq],
        "pair": [token, seq, token, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }
