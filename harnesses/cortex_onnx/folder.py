"""Read and check a model folder's files (no weights): what the model is, or why it cannot load.

Reads ``config.json``, ``generation_config.json``, ``tokenizer_config.json``,
``chat_template.jinja`` and ``genai_config.json`` as JSON/text only. Every failure is a
``HarnessError`` that names the file and what is wrong: 404 when the folder is missing, 400
otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from cortex.harness import HarnessError

BAD = "bad_model_folder"


@attrs.frozen
class ModelFolder:
    """The facts the harness needs about one model folder."""

    path: str
    model_file: str  # absolute path of the ONNX graph
    config: Mapping[str, Any]
    generation_config: Mapping[str, Any]
    tokenizer_config: Mapping[str, Any]
    genai_config: Mapping[str, Any] | None
    chat_template: str | None
    eos_token_ids: frozenset[int]
    eos_token: str | None
    bos_token: str | None
    num_layers: int | None
    context_length: int

    @property
    def tokenizer_file(self) -> str:
        """Absolute path of ``tokenizer.json``."""
        return os.path.join(self.path, "tokenizer.json")

    def weights_bytes(self) -> int:
        """Size of the graph and its external data files on disk."""
        base = os.path.basename(self.model_file)
        return sum(
            os.path.getsize(os.path.join(self.path, name))
            for name in os.listdir(self.path)
            if name.startswith(base) or name.endswith((".onnx.data", ".onnx_data"))
        )


def bad(message: str) -> HarnessError:
    """A 400 about the folder's contents."""
    return HarnessError(message, status=400, code=BAD)


def read_folder(path: str, need_model: bool = True) -> ModelFolder:
    """Check ``path`` and read its metadata; ``need_model=False`` skips the graph (tokenize)."""
    if not os.path.isdir(path):
        what = "is a file, not a model folder" if os.path.exists(path) else "does not exist"
        status = 400 if os.path.exists(path) else 404
        raise HarnessError(f"model folder {path} {what}", status=status, code="model_not_found")
    genai = _json(path, "genai_config.json", required=False)
    config = _json(path, "config.json", required=genai is None) or {}
    generation = _json(path, "generation_config.json", required=False) or {}
    tok_config = _json(path, "tokenizer_config.json", required=False) or {}
    decoder = (genai or {}).get("model", {}).get("decoder", {})
    model_file = os.path.join(path, str(decoder.get("filename", "model.onnx")))
    if need_model and not os.path.isfile(model_file):
        raise bad(f"{path} has no {os.path.basename(model_file)}")
    if not os.path.isfile(os.path.join(path, "tokenizer.json")):
        raise bad(f"{path} has no tokenizer.json (the harness tokenizes with `tokenizers`)")
    template = _template(path, tok_config)
    eos_token = _token_text(tok_config.get("eos_token"))
    layers = config.get("num_hidden_layers", decoder.get("num_hidden_layers"))
    if layers is not None and (not isinstance(layers, int) or layers < 1):
        raise bad(f"config.json num_hidden_layers is {layers!r}, expected a positive integer")
    return ModelFolder(
        path=path,
        model_file=model_file,
        config=config,
        generation_config=generation,
        tokenizer_config=tok_config,
        genai_config=genai,
        chat_template=template,
        eos_token_ids=frozenset(
            _ids("generation_config.json", generation.get("eos_token_id"))
            | _ids("config.json", config.get("eos_token_id"))
            | _ids("genai_config.json", (genai or {}).get("model", {}).get("eos_token_id"))
        ),
        eos_token=eos_token,
        bos_token=_token_text(tok_config.get("bos_token")),
        num_layers=layers,
        context_length=_context_length(config, genai, tok_config),
    )


def _json(folder: str, name: str, required: bool) -> dict[str, Any] | None:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        if required:
            raise bad(f"{folder} has no {name}")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise bad(f"{name} in {folder} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise bad(f"{name} in {folder} must hold a JSON object, not {type(value).__name__}")
    return value


def _template(folder: str, tok_config: Mapping[str, Any]) -> str | None:
    path = os.path.join(folder, "chat_template.jinja")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # named templates: take "default"
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is not None and not isinstance(template, str):
        raise bad("tokenizer_config.json chat_template must be a string")
    return template


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _ids(source: str, value: Any) -> set[int]:
    if value is None:
        return set()
    values: Iterable[Any] = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise bad(f"{source} eos_token_id must be an integer or a list of integers, not {value!r}")
    return set(values)


def _context_length(
    config: Mapping[str, Any], genai: Mapping[str, Any] | None, tok_config: Mapping[str, Any]
) -> int:
    for value in (
        config.get("max_position_embeddings"),
        (genai or {}).get("model", {}).get("context_length"),
        tok_config.get("model_max_length"),
    ):
        if isinstance(value, int) and 0 < value < 10**7:
            return value
    raise bad("no context length: config.json needs max_position_embeddings")
