"""The model's text side: tokenizer, chat template and special tokens; prompts to ids and ids
to text. Loads ``tokenizer.json`` with ``tokenizers`` (imported on first use), never weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cortex.harness import HarnessError
from cortex_onnx.folder import ModelFolder, bad
from cortex_onnx.template import render_chat


class Prompter:
    """Encodes prompts and decodes output for one model folder."""

    def __init__(self, folder: ModelFolder) -> None:
        from tokenizers import Tokenizer

        try:
            self.tokenizer: Any = Tokenizer.from_file(folder.tokenizer_file)
        except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception on a bad file
            raise bad(f"tokenizer.json in {folder.path} cannot be read: {e}") from None
        self.template = folder.chat_template
        self.bos_token = folder.bos_token
        self.eos_token = folder.eos_token
        eos = set(folder.eos_token_ids)
        eos_id = self.tokenizer.token_to_id(folder.eos_token) if folder.eos_token else None
        if eos_id is not None:
            eos.add(int(eos_id))
        self.eos_token_ids = frozenset(eos)
        self.vocab_size: int = self.tokenizer.get_vocab_size(with_added_tokens=True)

    def render(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
    ) -> str:
        """The chat prompt as text, generation prompt included."""
        if self.template is None:
            raise HarnessError("this model has no chat template; use /v1/completions")
        return render_chat(
            self.template, messages, tools, bos_token=self.bos_token, eos_token=self.eos_token
        )

    def encode(
        self,
        messages: Sequence[Mapping[str, Any]] | None,
        tools: Sequence[Mapping[str, Any]] | None,
        prompt: str | None,
    ) -> list[int]:
        """Prompt ids: a rendered chat (the template adds any BOS) or a raw completion prompt
        (the tokenizer's own post-processor adds any BOS)."""
        if messages is not None:
            text = self.render(messages, tools)
            ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False).ids
        elif prompt is not None:
            ids = self.tokenizer.encode(prompt, add_special_tokens=True).ids
        else:
            raise HarnessError("a request needs messages or a prompt")
        if not ids:
            raise HarnessError("the prompt is empty")
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text for ``ids``, special tokens left out."""
        text: str = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        return text
