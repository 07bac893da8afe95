"""Measure device memory bandwidth with an ONNX Runtime elementwise Add (read + write), and print
the decode tok/s bound it implies for a model folder (weight bytes read once per token).

    python bench/bandwidth.py [--provider cuda|cpu] [--mb 512] [--model FOLDER]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper


def copy_gbps(provider: str, mb: int) -> float:
    """GB/s moved by Y = X + 1 over an ``mb`` MiB float32 tensor, inputs and outputs bound on
    the device (2 x bytes per run)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "bw", [x], [y], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    providers = ["CUDAExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    session = ort.InferenceSession(model.SerializeToString(), providers=providers)
    device = "cuda" if provider == "cuda" else "cpu"
    n = mb * 2**20 // 4
    src = ort.OrtValue.ortvalue_from_numpy(np.zeros(n, np.float32), device, 0)
    dst = ort.OrtValue.ortvalue_from_shape_and_type([n], np.float32, device, 0)
    binding = session.io_binding()
    binding.bind_ortvalue_input("x", src)
    binding.bind_ortvalue_output("y", dst)
    times = []
    for _ in range(12):
        binding.synchronize_inputs()
        began = time.perf_counter()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        times.append(time.perf_counter() - began)
    return 2 * n * 4 / statistics.median(times[2:]) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--model", help="model folder: print its bandwidth-bound decode tok/s")
    args = parser.parse_args()
    gbps = copy_gbps(args.provider, args.mb)
    print(f"bandwidth_gbps {gbps:.1f}")
    if args.model:
        weights = sum(p.stat().st_size for p in Path(args.model).glob("model.onnx*"))
        print(f"weight_mb {weights / 2**20:.0f}")
        print(f"bound_tok_s {gbps * 1e9 / weights:.0f}")


if __name__ == "__main__":
    main()
