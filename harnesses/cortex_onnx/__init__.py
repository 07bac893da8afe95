"""The default harness: ONNX Runtime with a KV-cache decode loop.

Importing this package is cheap: onnxruntime, numpy, tokenizers and jinja2 load only when a
model (or a tokenizer, for ``count_tokens``) is first needed.
"""

from cortex_onnx.harness import OnnxHarness, OnnxModel

__all__ = ["OnnxHarness", "OnnxModel"]
