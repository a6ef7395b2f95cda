"""Shared fixtures for the selection tests: small synthetic committees (fast on 2 cores)."""

from __future__ import annotations

import pytest

from edge_committee.select.synthetic import synthetic_data


@pytest.fixture(scope="session")
def small_data():
    """5 members, 2,000 validation and 1,500 test samples, EfficientNet-like MACs."""
    return synthetic_data(num_members=5, num_val=2000, num_test=1500, seed=3)


@pytest.fixture(scope="session")
def small_frontier(small_data):
    from edge_committee.select import frontier

    return frontier(small_data, max_len=3, stage_overhead=1e6)
