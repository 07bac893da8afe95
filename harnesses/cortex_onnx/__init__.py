"""The default harness: ONNX Runtime with a KV-cache decode loop."""
