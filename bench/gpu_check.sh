#!/usr/bin/env bash
# One prepared check of the ONNX harness on a CUDA machine without internet (< 10 minutes):
# installs only wheels from ./wheelhouse (if present), runs the engine tests with the CUDA
# provider forced (CORTEX_ONNX_PROVIDER=cuda, IOBinding on the device), benchmarks the tiny model
# and a random SmolLM2-135M-shaped model at batch 1 and 4 and with prefix reuse, measures the
# device's copy bandwidth for the decode bound, and prints a short results table last.
#
#   bash bench/gpu_check.sh            (from anywhere; PYTHON=... to pick the interpreter)
#
# Prepare the wheels where there is internet, for the GPU host's Python version:
#   python3 -m pip download -d wheelhouse onnxruntime-gpu numpy tokenizers jinja2 \
#       attrs cattrs tomlkit aiohttp prometheus-client pytest hypothesis onnx
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

if [ -d wheelhouse ]; then
    "$PY" -m pip uninstall -y -q onnxruntime >/dev/null 2>&1  # it would shadow onnxruntime-gpu
    "$PY" -m pip install -q --no-index --find-links wheelhouse \
        onnxruntime-gpu numpy tokenizers jinja2 attrs cattrs tomlkit aiohttp prometheus-client \
        pytest hypothesis onnx || exit 1
fi
export PYTHONPATH="$PWD:$PWD/harnesses${PYTHONPATH:+:$PYTHONPATH}"
export CORTEX_ONNX_PROVIDER=cuda
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1
"$PY" -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())" > "$OUT/ort.txt" 2>&1

# Engine tests on CUDA (the fp32 GroupQueryAttention test pins itself to the CPU provider).
timeout 300 "$PY" -m pytest -q -p no:cacheprovider -m "not slow" tests/neuron/test_onnx_*.py tests/export \
    > "$OUT/tests.txt" 2>&1
tests_rc=$?

# A random SmolLM2-135M-shaped model (30 layers, 576 hidden, 9/3 heads, vocab 49152) for speed.
timeout 120 "$PY" bench/random_model.py "$OUT/smol135-random" > "$OUT/make.txt" 2>&1
extra=()
[ -f "$OUT/smol135-random/model.onnx" ] && extra=(--model "$OUT/smol135-random")
# Batch 1, batch 4 (scheduler, KV on the device through IOBinding) and second-turn TTFT.
timeout 300 "$PY" bench/engine.py --provider cuda --repeats 3 --batch --prefix "${extra[@]}" \
    > "$OUT/bench.txt" 2>&1
bench_rc=$?
# Device copy bandwidth (ORT Add over 512 MiB, bound on the device) and the decode bound it sets.
timeout 60 "$PY" bench/bandwidth.py --provider cuda --model "$OUT/smol135-random" \
    > "$OUT/bandwidth.txt" 2>&1
if [ -f "$OUT/smol135-random/model.onnx" ]; then
    timeout 90 "$PY" bench/engine.py --provider cpu --repeats 3 --no-tiny \
        --model "$OUT/smol135-random" > "$OUT/bench_cpu.txt" 2>&1
fi
decode=$(grep '^| smol135-random | CUDA' "$OUT/bench.txt" | awk -F'|' '{print $7}' | tr -d ' ')
bound=$(awk '/^bound_tok_s/ {print $2}' "$OUT/bandwidth.txt")

echo "=== details in $OUT ==="
tail -n 25 "$OUT/tests.txt"
echo
echo "## GPU check results"
echo "- GPU: $(cat "$OUT/gpu.txt")"
echo "- onnxruntime: $(cat "$OUT/ort.txt")"
echo "- engine tests (CUDA provider forced): rc=$tests_rc, $(tail -n 1 "$OUT/tests.txt")"
echo "- benchmark rc=$bench_rc (CUDA):"
echo
grep -E '^\||^prefill|^batching|^prefix' "$OUT/bench.txt" || tail -n 20 "$OUT/bench.txt"
[ -f "$OUT/bench_cpu.txt" ] && { echo; echo "same host, CPU provider:"; grep '^|' "$OUT/bench_cpu.txt"; }
echo
echo "memory-bandwidth bound (weight bytes per token / measured device copy bandwidth):"
echo
echo "| device GB/s | weights MB | bound tok/s | measured batch-1 decode tok/s | fraction |"
echo "|---|---|---|---|---|"
gbps=$(awk '/^bandwidth_gbps/ {print $2}' "$OUT/bandwidth.txt")
mb=$(awk '/^weight_mb/ {print $2}' "$OUT/bandwidth.txt")
frac=$(awk -v d="${decode:-0}" -v b="${bound:-0}" 'BEGIN { if (b > 0) printf "%.2f", d / b }')
echo "| ${gbps:-?} | ${mb:-?} | ${bound:-?} | ${decode:-?} | ${frac:-?} |"
exit $(( tests_rc != 0 || bench_rc != 0 ))
