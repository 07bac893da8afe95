"""Choose the next token from a row of logits: greedy, temperature, top-k, top-p. Pure numpy."""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt


@attrs.frozen
class SamplingParams:
    """How to pick tokens; ``temperature <= 0`` means greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        """True when the choice is the arg-max."""
        return self.temperature <= 0


def make_rng(seed: int | None) -> np.random.Generator:
    """A generator that repeats for a given seed and is fresh for ``None``."""
    return np.random.default_rng(seed)


def candidates(
    logits: npt.NDArray[np.floating], params: SamplingParams
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Token ids that may be drawn and their probabilities, most likely first."""
    scaled = logits.astype(np.float64) / params.temperature
    size = scaled.shape[0]
    if 0 < params.top_k < size:
        ids = np.argpartition(-scaled, params.top_k - 1)[: params.top_k]
    else:
        ids = np.arange(size)
    if params.top_k or params.top_p < 1.0:
        ids = ids[np.argsort(-scaled[ids], kind="stable")]
    probs = np.exp(scaled[ids] - scaled[ids].max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        # Keep the smallest head whose mass reaches top_p (always at least one token).
        keep = int(np.searchsorted(np.cumsum(probs), params.top_p)) + 1
        ids, probs = ids[:keep], probs[:keep] / probs[:keep].sum()
    return ids, probs


def choose_token(
    logits: npt.NDArray[np.floating], params: SamplingParams, rng: np.random.Generator
) -> int:
    """The next token id; consumes one draw from ``rng`` unless greedy."""
    if params.greedy:
        return int(np.argmax(logits))
    ids, probs = candidates(logits, params)
    cdf = np.cumsum(probs)
    index = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return int(ids[min(index, ids.shape[0] - 1)])
