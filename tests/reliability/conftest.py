"""Fixtures for the reliability tests: a namespace bed and a cluster of real processes.

Namespaces are checked once per run; where the kernel refuses them the tests that
need them are skipped with the reason. Everything is torn down even on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Bed, unavailable
from tests.reliability.cluster import Cluster


@pytest.fixture
def bed() -> Iterator[Bed]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    bed = Bed()
    try:
        yield bed
    finally:
        bed.close()


@pytest.fixture
def cluster(bed: Bed, tmp_path: Path) -> Iterator[Cluster]:
    """Two neuron namespaces and a gateway namespace; processes are started by the test."""
    cluster = Cluster(bed, tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()
