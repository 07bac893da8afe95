"""Model conversion: numpy weights -> the ONNX model folder the ONNX harness loads.

Tool-time code: it needs numpy and the ``onnx`` package, never torch. Nothing here is
imported by the gateway or by a neuron at run time.
"""


class ExportError(ValueError):
    """A source cannot be converted; the message says why (the CLI exits 2 with it)."""
