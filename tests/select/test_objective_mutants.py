"""Selection objectives (``select/objective.py``): what the mutation run over the module found
untested (docs/mutation_testing.md), each pinned here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edge_committee.select.objective import (
    ALWAYS_EXIT,
    NEVER_EXIT,
    SelectionResult,
    choose,
    finite_threshold,
)


def test_infinite_thresholds_become_float32_extremes():
    big = float(np.finfo(np.float32).max)
    assert NEVER_EXIT == big and ALWAYS_EXIT == -big
    assert finite_threshold(math.inf) == big and finite_threshold(-math.inf) == -big
    assert finite_threshold(0.25) == 0.25 and type(finite_threshold(np.float32(0.5))) is float


def test_a_result_made_without_a_target_writes_nulls(small_frontier):
    cand, _ = choose(small_frontier, "worst_cost", 3e9)
    d = SelectionResult(cand, small_frontier, "worst_cost", 3e9).to_dict()
    assert d["target_accuracy"] is None and d["confidence_level"] is None and d["interval_level"] == 0.9
    json.dumps(d, allow_nan=False)  # strict JSON, as the manifest needs
