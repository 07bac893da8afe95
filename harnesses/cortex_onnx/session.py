"""Own the ONNX Runtime session of a decoder: pick the execution provider, check the graph's I/O
layout against the folder, and run forward steps with each generation's KV cache kept on the
device through IOBinding (only logits are copied back).

Two layouts (see ``cortex.export.llama_onnx``): optimum's growing past/present tensors, and
onnxruntime-genai's one preallocated buffer per layer that ``present.*`` writes in place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from cortex.harness import DeviceInfo, HarnessError
from cortex_onnx.folder import ModelFolder, bad

PROVIDER_ENV = "CORTEX_ONNX_PROVIDER"  # "cuda" | "cpu" | "auto": the default for options.provider
DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
INT_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
Port = tuple[str, Sequence[Any], str]  # name, shape, type as the session reports them


@attrs.frozen
class Layout:
    """Names and types of a decoder graph's inputs and outputs."""

    kind: str  # "optimum" | "genai"
    shared_buffer: bool  # past and present are one preallocated buffer
    input_ids: str
    attention_mask: str
    position_ids: str | None
    past: tuple[str, ...]  # key, value, key, value ... per layer
    present: tuple[str, ...]
    logits: str
    ids_dtype: Any
    kv_dtype: Any
    kv_heads: int
    head_size: int

    @property
    def num_layers(self) -> int:
        """Layers with a KV cache."""
        return len(self.past) // 2


def detect_layout(inputs: Sequence[Port], outputs: Sequence[Port], folder: ModelFolder) -> Layout:
    """Check the graph's ports against what the folder says; a 400 naming the mismatch."""
    ins = {name: (shape, kind) for name, shape, kind in inputs}
    outs = {name: (shape, kind) for name, shape, kind in outputs}
    genai = (folder.genai_config or {}).get("model", {}).get("decoder", {})
    in_names, out_names = genai.get("inputs", {}), genai.get("outputs", {})
    names = {
        "input_ids": in_names.get("input_ids", "input_ids"),
        "attention_mask": in_names.get("attention_mask", "attention_mask"),
        "position_ids": in_names.get("position_ids", "position_ids"),
        "past_key": in_names.get("past_key_names", "past_key_values.%d.key"),
        "past_value": in_names.get("past_value_names", "past_key_values.%d.value"),
        "present_key": out_names.get("present_key_names", "present.%d.key"),
        "present_value": out_names.get("present_value_names", "present.%d.value"),
        "logits": out_names.get("logits", "logits"),
    }
    file = os.path.basename(folder.model_file)
    for port in ("input_ids", "attention_mask"):
        if names[port] not in ins:
            raise bad(f"{file} has no input {names[port]!r} (inputs: {sorted(ins)})")
    if names["logits"] not in outs:
        raise bad(f"{file} has no output {names['logits']!r} (outputs: {sorted(outs)})")
    layers = 0
    while names["past_key"] % layers in ins:
        layers += 1
    if layers == 0:
        raise bad(f"{file} has no KV-cache inputs named like {names['past_key'] % 0!r}")
    if folder.num_layers is not None and layers != folder.num_layers:
        says = folder.num_layers
        raise bad(f"{file} has KV inputs for {layers} layers but the config says {says}")
    past, present = [], []
    for n in range(layers):
        for kind in ("key", "value"):
            past.append(names[f"past_{kind}"] % n)
            present.append(names[f"present_{kind}"] % n)
    missing = [p for p in past if p not in ins] + [p for p in present if p not in outs]
    if missing:
        raise bad(f"{file} lacks KV ports {missing[:4]}")
    shape, kv_type = ins[past[0]]
    if kv_type not in DTYPES:
        raise bad(f"{file} KV cache is {kv_type}; the harness runs float32 or float16")
    if any(ins[p][1] != kv_type for p in past) or any(outs[p][1] != kv_type for p in present):
        raise bad(f"{file} mixes KV cache types")
    ids_type = ins[names["input_ids"]][1]
    if ids_type not in INT_DTYPES or ins[names["attention_mask"]][1] not in INT_DTYPES:
        raise bad(f"{file} input_ids/attention_mask must be int64 or int32, not {ids_type}")
    kv_heads, head_size = _kv_dims(shape, folder, file)
    search = (folder.genai_config or {}).get("search", {})
    return Layout(
        kind="genai" if folder.genai_config is not None else "optimum",
        shared_buffer=bool(search.get("past_present_share_buffer", False)),
        input_ids=names["input_ids"],
        attention_mask=names["attention_mask"],
        position_ids=names["position_ids"] if names["position_ids"] in ins else None,
        past=tuple(past),
        present=tuple(present),
        logits=names["logits"],
        ids_dtype=INT_DTYPES[ids_type],
        kv_dtype=DTYPES[kv_type],
        kv_heads=kv_heads,
        head_size=head_size,
    )


def _kv_dims(shape: Sequence[Any], folder: ModelFolder, file: str) -> tuple[int, int]:
    """KV heads and head size: from the graph when static, else from the config."""
    if len(shape) != 4:
        raise bad(f"{file} KV inputs have rank {len(shape)}; expected [batch, heads, seq, head]")
    config, genai = folder.config, (folder.genai_config or {}).get("model", {}).get("decoder", {})
    heads = config.get("num_attention_heads", genai.get("num_attention_heads"))
    kv_heads = config.get("num_key_value_heads", genai.get("num_key_value_heads", heads))
    head_size = config.get("head_dim", genai.get("head_size"))
    if head_size is None and heads and config.get("hidden_size"):
        head_size = config["hidden_size"] // heads
    for index, expected, what in ((1, kv_heads, "KV heads"), (3, head_size, "head size")):
        actual = shape[index]
        if isinstance(actual, int) and isinstance(expected, int) and actual != expected:
            raise bad(f"{file} has {actual} {what} in its KV cache but the config says {expected}")
    kv = shape[1] if isinstance(shape[1], int) else kv_heads
    size = shape[3] if isinstance(shape[3], int) else head_size
    if not isinstance(kv, int) or not isinstance(size, int):
        raise bad(f"{file} KV dims are symbolic and the config lacks heads/head_dim")
    return kv, size


def choose_providers(
    available: Sequence[str], options: Mapping[str, Any], devices: Sequence[DeviceInfo]
) -> tuple[list[Any], bool]:
    """The providers list for the session, and whether CUDA was explicitly demanded."""
    requested = str(options.get("provider") or os.environ.get(PROVIDER_ENV) or "auto").lower()
    if requested not in ("auto", "cuda", "cpu"):
        raise HarnessError(f"options.provider must be auto, cuda or cpu, not {requested!r}")
    cuda = [d for d in devices if d.kind == "cuda"]
    has_cuda = "CUDAExecutionProvider" in available
    if requested == "cuda" and not has_cuda:
        raise HarnessError(f"CUDA was requested but onnxruntime offers only {list(available)}")
    if requested == "cpu" or not has_cuda or (requested == "auto" and devices and not cuda):
        return ["CPUExecutionProvider"], False
    cuda_options = {"device_id": cuda[0].index if cuda else 0}
    if not options.get("cuda_tf32"):
        cuda_options["use_tf32"] = 0  # keep fp32 logits faithful unless asked otherwise
    return [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"], requested == "cuda"


def default_threads() -> int:
    """Intra-op threads: half the cores, 1..4, so a neuron leaves room for its neighbours."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def create_session(
    folder: ModelFolder, options: Mapping[str, Any], devices: Sequence[DeviceInfo]
) -> tuple[Any, str]:
    """An InferenceSession for the folder's graph and the provider it really runs on."""
    import onnxruntime as ort

    providers, demanded = choose_providers(ort.get_available_providers(), options, devices)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(options.get("intra_op_threads") or default_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spinning = "1" if options.get("allow_spinning") else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    so.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(folder.model_file, sess_options=so, providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors for a bad graph are untyped
        raise bad(f"onnxruntime cannot load {folder.model_file}: {e}") from None
    provider = str(session.get_providers()[0])
    if demanded and provider != "CUDAExecutionProvider":
        raise HarnessError(f"CUDA was requested but the session fell back to {provider}")
    return session, provider


def ports(args: Sequence[Any]) -> list[Port]:
    """(name, shape, type) of session inputs or outputs."""
    return [(a.name, list(a.shape), a.type) for a in args]


class KVCache:
    """One generation's KV state, resident on the session's device."""

    def __init__(self, past: dict[str, Any], capacity: int | None) -> None:
        self.past = past
        self.length = 0  # tokens already in the cache
        self.capacity = capacity  # preallocated length (shared buffer), else None
        self.run_seconds = 0.0  # time spent inside session.run, for the benchmark


class Decoder:
    """Forward steps over a decoder session (thread-safe: state lives in each ``KVCache``)."""

    def __init__(self, session: Any, layout: Layout, provider: str) -> None:
        self.session = session
        self.layout = layout
        self.device = "cuda" if provider == "CUDAExecutionProvider" else "cpu"
        self.device_id = _device_id(session) if self.device == "cuda" else 0

    def new_cache(self, capacity: int) -> KVCache:
        """An empty cache able to hold ``capacity`` tokens."""
        from onnxruntime import OrtValue

        lay = self.layout
        length = capacity if lay.shared_buffer else 0
        shape = (1, lay.kv_heads, length, lay.head_size)
        past = {}
        for name in lay.past:
            if lay.shared_buffer:
                zeros = np.zeros(shape, dtype=lay.kv_dtype)
                past[name] = OrtValue.ortvalue_from_numpy(zeros, self.device, self.device_id)
            else:
                past[name] = OrtValue.ortvalue_from_shape_and_type(
                    shape, lay.kv_dtype, self.device, self.device_id
                )
        return KVCache(past, capacity if lay.shared_buffer else None)

    def cache_from(self, arrays: Sequence[npt.NDArray[Any]], capacity: int) -> KVCache:
        """A cache holding the given KV (per port, [1, kv_heads, tokens, head_size]), able to
        hold ``capacity`` tokens."""
        from onnxruntime import OrtValue

        lay, length = self.layout, int(arrays[0].shape[2])
        past = {}
        for name, array in zip(lay.past, arrays, strict=True):
            if lay.shared_buffer:
                full = np.zeros((1, lay.kv_heads, capacity, lay.head_size), dtype=lay.kv_dtype)
                full[:, :, :length, :] = array
            else:
                full = np.ascontiguousarray(array, dtype=lay.kv_dtype)
            past[name] = OrtValue.ortvalue_from_numpy(full, self.device, self.device_id)
        cache = KVCache(past, capacity if lay.shared_buffer else None)
        cache.length = length
        return cache

    def export(self, cache: KVCache) -> tuple[npt.NDArray[Any], ...]:
        """Host copies of what ``cache`` holds, per port [1, kv_heads, tokens, head_size]."""
        n = cache.length
        return tuple(cache.past[name].numpy()[:, :, :n, :].copy() for name in self.layout.past)

    def step(
        self, past: Mapping[str, Any], tokens: Sequence[int], lengths: Sequence[int], width: int
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """One decode step of a left-padded batch: row ``i`` holds ``lengths[i]`` tokens at the
        right end of ``width`` KV columns and feeds ``tokens[i]``. Returns the logits [batch,
        vocab] and the new KV (``width + 1`` columns), left on the device."""
        lay = self.layout
        if lay.shared_buffer:
            raise HarnessError("a shared-buffer graph cannot run a left-padded batch", 500)
        count = len(tokens)
        held = np.asarray(lengths, dtype=np.int64)[:, None]
        columns = np.arange(width + 1, dtype=np.int64)[None, :]
        mask = (columns >= width - held).astype(lay.ids_dtype)
        binding = self.session.io_binding()
        binding.bind_cpu_input(lay.input_ids, np.asarray(tokens, dtype=lay.ids_dtype)[:, None])
        binding.bind_cpu_input(lay.attention_mask, mask)
        if lay.position_ids is not None:
            binding.bind_cpu_input(lay.position_ids, held.astype(lay.ids_dtype))
        for name in lay.past:
            binding.bind_ortvalue_input(name, past[name])
        binding.bind_output(lay.logits, "cpu")
        for present in lay.present:
            binding.bind_output(present, self.device, self.device_id)
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs()
        logits = np.array(values[0].numpy().reshape(count, -1), dtype=np.float32)
        return logits, dict(zip(lay.past, values[1:], strict=True))

    def forward(self, cache: KVCache, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """Run ``ids`` after what ``cache`` holds; return their logits [len(ids), vocab]."""
        lay = self.layout
        start, total = cache.length, cache.length + len(ids)
        if cache.capacity is not None and total > cache.capacity:
            raise HarnessError(f"the KV buffer holds {cache.capacity} tokens, not {total}", 500)
        binding = self.session.io_binding()
        binding.bind_cpu_input(lay.input_ids, np.asarray([ids], dtype=lay.ids_dtype))
        binding.bind_cpu_input(lay.attention_mask, np.ones((1, total), dtype=lay.ids_dtype))
        if lay.position_ids is not None:
            positions = np.arange(start, total, dtype=lay.ids_dtype)[None, :]
            binding.bind_cpu_input(lay.position_ids, positions)
        for name in lay.past:
            binding.bind_ortvalue_input(name, cache.past[name])
        binding.bind_output(lay.logits, "cpu")
        for past, present in zip(lay.past, lay.present, strict=True):
            if lay.shared_buffer:
                binding.bind_ortvalue_output(present, cache.past[past])
            else:
                binding.bind_output(present, self.device, self.device_id)
        began = time.perf_counter()
        self.session.run_with_iobinding(binding)
        cache.run_seconds += time.perf_counter() - began
        values = binding.get_outputs()
        if not lay.shared_buffer:
            cache.past = dict(zip(lay.past, values[1:], strict=True))
        cache.length = total
        logits: npt.NDArray[np.float32] = np.array(values[0].numpy()[0], dtype=np.float32)
        return logits


def _device_id(session: Any) -> int:
    options = session.get_provider_options().get("CUDAExecutionProvider", {})
    return int(options.get("device_id", 0))
