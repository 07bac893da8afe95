#!/usr/bin/env bash
# One prepared check of the ONNX harness on a CUDA machine without internet (< 10 minutes):
# installs only wheels from ./wheelhouse (if present), runs the engine tests with the CUDA
# provider forced (CORTEX_ONNX_PROVIDER=cuda, IOBinding on the device), benchmarks the tiny model
# and a random SmolLM2-135M-shaped model, and prints a short results table last.
#
#   bash bench/gpu_check.sh            (from anywhere; PYTHON=... to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

if [ -d wheelhouse ]; then
    "$PY" -m pip uninstall -y -q onnxruntime >/dev/null 2>&1  # it would shadow onnxruntime-gpu
    "$PY" -m pip install -q --no-index --find-links wheelhouse \
        onnxruntime-gpu numpy tokenizers jinja2 attrs pytest hypothesis onnx || exit 1
fi
export PYTHONPATH="$PWD:$PWD/harnesses${PYTHONPATH:+:$PYTHONPATH}"
export CORTEX_ONNX_PROVIDER=cuda
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1
"$PY" -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())" > "$OUT/ort.txt" 2>&1

# Engine tests on CUDA (the fp32 GroupQueryAttention test pins itself to the CPU provider).
timeout 300 "$PY" -m pytest -q -p no:cacheprovider tests/neuron/test_onnx_*.py tests/export \
    > "$OUT/tests.txt" 2>&1
tests_rc=$?

# A random SmolLM2-135M-shaped model (30 layers, 576 hidden, 9/3 heads, vocab 49152) for speed.
timeout 120 "$PY" - "$OUT/smol135-random" > "$OUT/make.txt" 2>&1 <<'PYEOF'
import json, shutil, sys
from pathlib import Path
import numpy as np
from cortex.export.llama_onnx import LlamaConfig, build_decoder, save_model, weight_shapes
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
cfg = LlamaConfig(num_layers=30, hidden_size=576, num_heads=9, num_kv_heads=3,
                  intermediate_size=1536, vocab_size=49152, rope_theta=100000.0, rms_eps=1e-5,
                  tie_word_embeddings=True)
rng = np.random.default_rng(0)
weights = {k: (rng.standard_normal(s, dtype=np.float32) * 0.02) if len(s) == 2
           else np.ones(s, np.float32) for k, s in weight_shapes(cfg).items()}
save_model(build_decoder(cfg, weights), str(out))
(out / "config.json").write_text(json.dumps(cfg.to_hf() | {"eos_token_id": 2}))
for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
    shutil.copy(Path("models/tiny-chat") / name, out / name)
PYEOF
extra=()
[ -f "$OUT/smol135-random/model.onnx" ] && extra=(--model "$OUT/smol135-random")
timeout 180 "$PY" bench/engine.py --provider cuda "${extra[@]}" > "$OUT/bench.txt" 2>&1
bench_rc=$?
if [ -f "$OUT/smol135-random/model.onnx" ]; then
    timeout 60 "$PY" bench/engine.py --provider cpu --repeats 3 --model "$OUT/smol135-random" \
        > "$OUT/bench_cpu.txt" 2>&1
fi

echo "=== details in $OUT ==="
tail -n 25 "$OUT/tests.txt"
echo
echo "## GPU check results"
echo "- GPU: $(cat "$OUT/gpu.txt")"
echo "- onnxruntime: $(cat "$OUT/ort.txt")"
echo "- engine tests (CUDA provider forced): rc=$tests_rc, $(tail -n 1 "$OUT/tests.txt")"
echo "- benchmark rc=$bench_rc (CUDA):"
echo
grep -E '^\||^prefill' "$OUT/bench.txt" || tail -n 20 "$OUT/bench.txt"
[ -f "$OUT/bench_cpu.txt" ] && { echo; echo "same host, CPU provider:"; grep '^|' "$OUT/bench_cpu.txt"; }
exit $(( tests_rc != 0 || bench_rc != 0 ))
