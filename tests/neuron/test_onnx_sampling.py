"""Token choice: greedy, top-k, top-p and seeded sampling."""

from __future__ import annotations

import numpy as np
from cortex_onnx.sampling import SamplingParams, candidates, choose_token, make_rng
from hypothesis import given
from hypothesis import strategies as st

logit_rows = st.lists(
    st.floats(-30, 30, allow_nan=False, allow_infinity=False), min_size=1, max_size=64
).map(lambda xs: np.asarray(xs, dtype=np.float32))


@given(logit_rows, st.floats(-2.0, 0.0))
def test_non_positive_temperature_is_greedy(logits: np.ndarray, temperature: float) -> None:
    """A temperature at or below zero always picks the arg-max."""
    params = SamplingParams(temperature=temperature, seed=0)
    assert choose_token(logits, params, make_rng(0)) == int(np.argmax(logits))


@given(logit_rows, st.integers(1, 8), st.integers(0, 2**32))
def test_top_k_draws_only_from_the_k_best(logits: np.ndarray, k: int, seed: int) -> None:
    """With top_k the drawn token is never below the k-th largest logit."""
    token = choose_token(logits, SamplingParams(top_k=k), make_rng(seed))
    kth = np.sort(logits)[::-1][min(k, logits.size) - 1]
    assert logits[token] >= kth


@given(logit_rows, st.floats(0.05, 0.99), st.integers(0, 2**32))
def test_top_p_draws_only_from_the_nucleus(logits: np.ndarray, top_p: float, seed: int) -> None:
    """With top_p the tokens strictly more likely than the drawn one hold less than top_p."""
    params = SamplingParams(top_p=top_p)
    token = choose_token(logits, params, make_rng(seed))
    probs = np.exp(logits.astype(np.float64) - logits.max())
    probs /= probs.sum()
    assert probs[probs > probs[token] * (1 + 1e-9)].sum() < top_p + 1e-9


@given(logit_rows, st.floats(0.1, 3.0), st.floats(0.1, 1.0), st.integers(0, 10))
def test_candidate_probabilities_sum_to_one(
    logits: np.ndarray, temperature: float, top_p: float, top_k: int
) -> None:
    """Candidates form a distribution, most likely first."""
    ids, probs = candidates(logits, SamplingParams(temperature, top_p, top_k))
    assert abs(probs.sum() - 1.0) < 1e-9
    assert len(set(ids.tolist())) == ids.size >= 1


def test_same_seed_same_tokens_and_different_seeds_differ() -> None:
    """A seed fixes the sequence of draws; another seed gives another sequence."""
    logits = np.zeros(1000, dtype=np.float32)
    params = SamplingParams(temperature=1.0)

    def draws(seed: int) -> list[int]:
        rng = make_rng(seed)
        return [choose_token(logits, params, rng) for _ in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
