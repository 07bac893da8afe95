"""Batched histogram updates equal one observe() per value, bucket for bucket."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from cortex.gateway.metrics import TTFT_BUCKETS, observe_all

VALUES = st.lists(
    st.one_of(st.sampled_from(TTFT_BUCKETS), st.floats(0, 200, allow_nan=False)), max_size=60
)


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for family in histogram.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


@given(VALUES)
def test_observe_all_matches_one_observe_per_value(values: list[float]) -> None:
    """Counts per bucket (values on a bound included), count and sum are identical."""
    one, batched = (
        Histogram(name, "h", ["m"], buckets=TTFT_BUCKETS, registry=CollectorRegistry())
        for name in ("one", "batched")
    )
    child = one.labels("x")
    for value in values:
        child.observe(value)
    observe_all(batched.labels("x"), values)
    left = {(n.replace("one", "h"), le): v for (n, le), v in _samples(one).items()}
    right = {(n.replace("batched", "h"), le): v for (n, le), v in _samples(batched).items()}
    assert left.keys() == right.keys()
    for key, value in left.items():
        assert abs(value - right[key]) <= 1e-9 * max(1.0, abs(value)), key
