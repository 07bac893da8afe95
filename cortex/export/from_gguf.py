"""Convert a Llama-family GGUF (llama, qwen2 architectures) into an ONNX model folder.

I/O: reads the GGUF (memory-mapped), writes the folder through a ``<dest>.partial`` sibling that
is renamed into place when complete, so an interrupted run never leaves a folder that looks
whole. Weights map to HF names; Llama GGUFs get llama.cpp's Q/K row permutation undone.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

from cortex.export import ExportError, ggml
from cortex.export.gguf import GGUFFile
from cortex.export.gguf_tokenizer import tokenizer_files
from cortex.export.llama_onnx import LlamaConfig, build_decoder
from cortex.export.model_files import save_model

DTYPES = ("fp32", "fp16", "int4")
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
PERMUTED = ("llama",)  # convert_hf_to_gguf permutes q/k rows for these (rope "norm" layout)
LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
Progress = Callable[[str], None]


def hf_name(name: str) -> str | None:
    """The HF weight name of a GGUF tensor name, or None for tensors the graph does not use."""
    if name in GLOBAL_NAMES:
        return GLOBAL_NAMES[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in LAYER_NAMES:
        return f"model.layers.{parts[1]}.{LAYER_NAMES[parts[2]]}.{parts[3]}"
    return None


def read_config(gguf: GGUFFile) -> LlamaConfig:
    """The graph's hyper-parameters from ``<arch>.*`` metadata."""
    arch = gguf.architecture
    if arch not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES)
        raise ExportError(f"GGUF architecture {arch!r} is not supported (supported: {known})")
    if gguf.arch_key("rope.scaling.type") not in (None, "none") or "rope_freqs.weight" in (
        gguf.tensors
    ):
        raise ExportError("RoPE scaling (rope.scaling.* or rope_freqs) is not supported yet")
    hidden, heads = int(gguf.arch_key("embedding_length")), int(gguf.arch_key("head_count", 0))
    heads = int(gguf.arch_key("attention.head_count", heads))
    head_dim = int(gguf.arch_key("attention.key_length", hidden // heads))
    rotary = int(gguf.arch_key("rope.dimension_count", head_dim))
    if rotary != head_dim:
        raise ExportError(f"partial rotary ({rotary} of {head_dim} dims) is not supported")
    embed = gguf.tensors.get("token_embd.weight")
    if embed is None:
        raise ExportError("the GGUF has no token_embd.weight")
    return LlamaConfig(
        num_layers=int(gguf.arch_key("block_count")),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=int(gguf.arch_key("attention.head_count_kv", heads)),
        intermediate_size=int(gguf.arch_key("feed_forward_length")),
        vocab_size=int(embed.shape[0]),
        max_position_embeddings=int(gguf.arch_key("context_length", 2048)),
        rope_theta=float(gguf.arch_key("rope.freq_base", 10000.0)),
        rms_eps=float(gguf.arch_key("attention.layer_norm_rms_epsilon", 1e-6)),
        tie_word_embeddings="output.weight" not in gguf.tensors,
        head_dim=head_dim,
    )


def unpermute_order(rows: int, heads: int) -> Any:
    """Row order that undoes convert_hf_to_gguf's ``permute`` of a q/k weight or bias."""
    import numpy as np

    return np.arange(rows).reshape(heads, rows // heads // 2, 2).transpose(0, 2, 1).reshape(-1)


def load_weights(
    gguf: GGUFFile, config: LlamaConfig, dtype: str, progress: Progress | None = None
) -> dict[str, Any]:
    """HF-named weights: float32 arrays, or ``Int4Weight`` linears when ``dtype`` is int4."""
    from cortex.export import nbits

    permuted = gguf.architecture in PERMUTED
    weights: dict[str, Any] = {}
    infos = [(hf_name(name), info) for name, info in gguf.tensors.items()]
    wanted = [(name, info) for name, info in infos if name is not None]
    for index, (name, info) in enumerate(wanted, 1):
        raw = gguf.raw(info, ggml.nbytes(info.ggml_type, info.shape))
        linear = len(info.shape) == 2 and name != "model.embed_tokens.weight"
        value: Any
        if dtype == "int4" and linear and info.ggml_type == ggml.Q4_0:
            value = nbits.from_q4(*ggml.q4_parts(raw, info.ggml_type, info.shape[0]))
        else:
            value = ggml.dequantize(raw, info.ggml_type, info.shape)
            if dtype == "int4" and linear and info.shape[1] % nbits.BLOCK == 0:
                value = nbits.quantize(value)
        heads = {"q_proj": config.num_heads, "k_proj": config.num_kv_heads}.get(
            name.rsplit(".", 2)[-2]
        )
        if permuted and heads:
            order = unpermute_order(info.shape[0], heads)
            value = value.take_rows(order) if isinstance(value, nbits.Int4Weight) else value[order]
        weights[name] = value
        if progress and (index % 16 == 0 or index == len(wanted)):
            progress(f"read {index}/{len(wanted)} tensors")
    if config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    return weights


def convert(
    src: str, dest: str, dtype: str = "fp32", progress: Progress | None = None
) -> list[tuple[str, int]]:
    """Write the model folder for ``src`` at ``dest``; return (file, bytes) for what it wrote."""
    if dtype not in DTYPES:
        raise ExportError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    with GGUFFile(src) as gguf:
        config = read_config(gguf)
        files = tokenizer_files(gguf.metadata, config.max_position_embeddings)
        if files.warning and progress:
            progress(f"warning: {files.warning}")
        weights = load_weights(gguf, config, dtype, progress)
        if progress:
            progress("building the ONNX graph")
        model = build_decoder(
            config, weights, weight_dtype="float16" if dtype == "fp16" else "float32"
        )
        del weights
        partial = dest.rstrip("/\\") + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        if progress:
            progress(f"writing {dest}")
        save_model(model, partial)
        del model
        hf = config.to_hf() | {
            "architectures": [ARCHITECTURES[gguf.architecture]],
            "model_type": gguf.architecture,
            "bos_token_id": files.bos_token_id,
            "eos_token_id": files.eos_token_ids[0] if files.eos_token_ids else None,
            "torch_dtype": "float16" if dtype == "fp16" else "float32",
        }
        generation = {"eos_token_id": files.eos_token_ids, "do_sample": False}
        if files.bos_token_id is not None:
            generation["bos_token_id"] = files.bos_token_id
        _write_json(partial, "config.json", hf)
        _write_json(partial, "generation_config.json", generation)
        _write_json(partial, "tokenizer.json", files.tokenizer, indent=None)
        _write_json(partial, "tokenizer_config.json", files.tokenizer_config)
        if files.chat_template is not None:
            with open(os.path.join(partial, "chat_template.jinja"), "w", encoding="utf-8") as f:
                f.write(files.chat_template)
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.replace(partial, dest)
    return [(name, os.path.getsize(os.path.join(dest, name))) for name in sorted(os.listdir(dest))]


def _write_json(folder: str, name: str, value: Any, indent: int | None = 1) -> None:
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        json.dump(value, f, indent=indent, ensure_ascii=False)
        f.write("\n")
