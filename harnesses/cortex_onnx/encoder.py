"""Embeddings from an encoder graph: mean of ``last_hidden_state`` over the attention mask.

Runs on the session's own thread pool through ``session.run``; one text at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cortex.harness import HarnessError
from cortex_onnx.folder import bad
from cortex_onnx.session import INT_DTYPES, Port, ports

OUTPUT = "last_hidden_state"


def is_encoder(inputs: Sequence[Port], outputs: Sequence[Port]) -> bool:
    """True for a graph with ``input_ids`` in and ``last_hidden_state`` out, and no KV cache."""
    names = {name for name, _, _ in inputs}
    return (
        "input_ids" in names
        and any(name == OUTPUT for name, _, _ in outputs)
        and not any("past" in name for name in names)
    )


class Encoder:
    """Mean-pooled sentence embeddings."""

    def __init__(self, session: Any, tokenizer: Any) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.inputs = {name: kind for name, _, kind in ports(session.get_inputs())}
        unknown = set(self.inputs) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown:
            raise bad(f"the encoder graph has inputs the harness cannot fill: {sorted(unknown)}")

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text."""
        vectors = []
        for index, text in enumerate(texts):
            ids = self.tokenizer.encode(text, add_special_tokens=True).ids
            if not ids:
                raise HarnessError(f"input[{index}] is empty")
            feed = {}
            for name, kind in self.inputs.items():
                fill = 1 if name == "attention_mask" else 0
                value = ids if name == "input_ids" else [fill] * len(ids)
                feed[name] = np.asarray([value], dtype=INT_DTYPES.get(kind, np.int64))
            hidden = self.session.run([OUTPUT], feed)[0][0].astype(np.float64)
            vectors.append([float(x) for x in hidden.mean(axis=0)])
        return vectors
