"""Write a random-weight model folder with SmolLM2-135M's shape for speed tests (files only).

30 layers, hidden 576, 9/3 heads, vocab 49152, tied embeddings; 514 MB of fp32 weights. The
tokenizer and chat template are the tiny model's. ``layout="genai"`` also writes the
``genai_config.json`` that onnxruntime-genai (and our harness) read.

    .venv/bin/python bench/random_model.py /tmp/smol135-random [--layout genai] [--layers N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import numpy as np  # noqa: E402

from cortex.export.llama_onnx import LlamaConfig, build_decoder, weight_shapes  # noqa: E402
from cortex.export.model_files import genai_config, save_model  # noqa: E402

EOS = 2


def make_random(out: str, layout: str = "optimum", layers: int = 30) -> Path:
    """Build the folder at ``out`` (replacing a model there) and return its path."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = LlamaConfig(
        num_layers=layers,
        hidden_size=576,
        num_heads=9,
        num_kv_heads=3,
        intermediate_size=1536,
        vocab_size=49152,
        max_position_embeddings=2048,
        rope_theta=100000.0,
        rms_eps=1e-5,
        tie_word_embeddings=True,
    )
    rng = np.random.default_rng(0)
    weights = {
        k: (rng.standard_normal(s, dtype=np.float32) * 0.02)
        if len(s) == 2
        else np.ones(s, np.float32)
        for k, s in weight_shapes(cfg).items()
    }
    save_model(build_decoder(cfg, weights, layout), str(folder))
    (folder / "config.json").write_text(json.dumps(cfg.to_hf() | {"eos_token_id": EOS}))
    if layout == "genai":
        (folder / "genai_config.json").write_text(json.dumps(genai_config(cfg, EOS)))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(ROOT / "models" / "tiny-chat" / name, folder / name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--layout", default="optimum", choices=["optimum", "genai"])
    parser.add_argument("--layers", type=int, default=30)
    args = parser.parse_args()
    print(make_random(args.out, args.layout, args.layers))


if __name__ == "__main__":
    main()
