"""Sample selection: reproducible from the seed, stratified by label when labels exist."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_committee.calibration import select_indices
from edge_committee.errors import EdgeCommitteeError


def test_same_seed_same_selection_other_seed_other_selection():
    a = select_indices(1000, 50, seed=3)
    assert np.array_equal(a, select_indices(1000, 50, seed=3))
    assert not np.array_equal(a, select_indices(1000, 50, seed=4))
    assert len(a) == 50 and len(np.unique(a)) == 50 and np.all(np.diff(a) > 0)


def test_count_none_or_larger_takes_everything():
    assert np.array_equal(select_indices(7, None), np.arange(7))
    assert np.array_equal(select_indices(7, 100, seed=1), np.arange(7))


def test_stratified_shares_follow_class_frequencies():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    idx = select_indices(1000, 10, seed=0, labels=labels)
    assert np.bincount(labels[idx]).tolist() == [6, 3, 1]
    balanced = np.tile(np.arange(10), 600)
    idx = select_indices(len(balanced), 100, seed=5, labels=balanced)
    assert np.bincount(balanced[idx]).tolist() == [10] * 10


def test_bad_arguments():
    with pytest.raises(EdgeCommitteeError, match="positive"):
        select_indices(10, 0)
    with pytest.raises(EdgeCommitteeError, match="no samples"):
        select_indices(0, 5)
    with pytest.raises(EdgeCommitteeError, match="labels"):
        select_indices(10, 5, labels=np.zeros(3))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=200),
    st.integers(1, 250),
    st.integers(0, 2**31),
)
def test_stratified_invariants(labels, count, seed):
    labels = np.array(labels)
    idx = select_indices(len(labels), count, seed, labels)
    assert len(idx) == min(count, len(labels))
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)
    # every class gets its share rounded down or up
    n = len(labels)
    for c in np.unique(labels):
        got = int(np.sum(labels[idx] == c))
        share = np.sum(labels == c) * min(count, n) / n
        assert np.floor(share) <= got <= np.ceil(share)
