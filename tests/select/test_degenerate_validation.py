"""Degenerate validation labels (t3 MEDIUM #8 / LOW #19): one class is refused for every objective
and combiner; missing or rare classes are warned about."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from edge_committee.errors import EdgeCommitteeError
from edge_committee.select import select_cascade
from edge_committee.select.synthetic import synthetic_data

CASES = [("worst_cost", "largest"), ("mean_cost", "largest"), ("accuracy", 0.1)]


def _data(labels_fn, n=300):
    d = synthetic_data(num_members=3, num_val=n, num_test=100, num_classes=3, seed=1)
    y = labels_fn(d.val_labels.copy())
    return dataclasses.replace(d, val_labels=y)


@pytest.mark.parametrize("combiner", [None, "learned"])
@pytest.mark.parametrize("objective,budget", CASES)
def test_a_single_class_validation_split_is_refused(objective, budget, combiner):
    data = _data(lambda y: np.zeros_like(y))
    if budget == "largest":
        budget = max(data.costs.values())
    with pytest.raises(EdgeCommitteeError, match=r"validation labels hold a single class \(class 0, all 300"):
        select_cascade(data, objective, budget, max_len=2, combiner=combiner)


def test_missing_and_rare_classes_are_warned_about(caplog):
    def two_rare(y):
        y[y == 2] = 0  # class 2 missing
        y[np.flatnonzero(y == 1)[3:]] = 0  # class 1: 3 samples
        return y

    data = _data(two_rare)
    with caplog.at_level(logging.WARNING, logger="edge_committee"):
        res = select_cascade(data, "worst_cost", max(data.costs.values()), max_len=2, combiner="learned")
    text = caplog.text
    assert "no sample of 1 of 3 classes (e.g. class 2)" in text
    assert "fewer than 5 validation samples (class 1: 3)" in text and "learned combiner" in text
    assert res.chosen is not None


def test_a_healthy_split_gives_no_warning(caplog):
    data = _data(lambda y: y)
    with caplog.at_level(logging.WARNING, logger="edge_committee"):
        select_cascade(data, "worst_cost", max(data.costs.values()), max_len=2)
    assert "validation" not in caplog.text
