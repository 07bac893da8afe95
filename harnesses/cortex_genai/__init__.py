"""An optional harness over onnxruntime-genai's own generation loop (entry point ``genai``).

Importing this package is cheap: ``onnxruntime_genai`` is imported inside ``load``, and a missing
package becomes a ``HarnessError`` that says what to pip install.
"""

from cortex_genai.harness import GenaiHarness, GenaiModel

__all__ = ["GenaiHarness", "GenaiModel"]
