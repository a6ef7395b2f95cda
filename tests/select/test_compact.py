"""Compact member outputs (k candidate classes per sample) against the full softmaxes."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_committee.select import SelectionData, frontier
from edge_committee.select.compact import CompactOutputs
from edge_committee.select.stats import SplitOutputs

frontier_module = importlib.import_module("edge_committee.select.frontier")  # the package exports the function


def _logits(seed: int, m: int, n: int, c: int, scale: float, nonfinite: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_signal = rng.integers(0, c, n)
    out = {}
    for i in range(m):
        x = rng.standard_normal((n, c)) * scale
        x[np.arange(n), y_signal] += rng.uniform(0, 3)
        x = np.round(x, 1).astype(np.float32)  # rounding makes ties
        if nonfinite:
            x[rng.random(n) < 0.1, rng.integers(0, c)] = np.nan
        out[f"m{i}"] = x
    return out


@given(seed=st.integers(0, 2**31 - 1), m=st.integers(1, 4), n=st.integers(1, 120), c=st.integers(2, 40),
       k=st.integers(1, 6), scale=st.sampled_from([0.2, 1.0, 3.0]), nonfinite=st.booleans(),
       chunk=st.sampled_from([7, 1000]))
@settings(max_examples=40, deadline=None)
def test_compact_statistics_are_bit_identical(seed, m, n, c, k, scale, nonfinite, chunk):
    """Every prefix's confidence, label and correctness equal the full computation bit for bit,
    whatever k (samples the check cannot certify are held in full)."""
    logits = _logits(seed, m, n, c, scale, nonfinite)
    target = np.random.default_rng(seed + 1).integers(0, c, n)
    full = SplitOutputs(logits, target, "max_prob")
    names = list(logits)[::-1] if seed % 2 else list(logits)
    compact = CompactOutputs(logits, target, "max_prob", max_len=len(names), k=k, chunk=chunk)
    for a, b in zip(full.sequence(names), compact.sequence(names)):
        np.testing.assert_array_equal(a.conf, b.conf)
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_array_equal(a.correct, b.correct)
        np.testing.assert_array_equal(a.ok, b.ok)
    assert 0 <= compact.fallback <= n


def test_compact_holds_few_rows_in_full():
    """On a 500-class synthetic zoo (flat cheap members, confident expensive ones) the candidate
    rule leaves few samples in full at k = 64 for cascades of 3, and the compact form is far
    smaller than the softmaxes; more members per prefix need more candidates."""
    from edge_committee.select.synthetic import synthetic_data

    data = synthetic_data(12, 1000, 10, 500, seed=0)
    short = CompactOutputs(data.val_logits, data.val_labels, "max_prob", max_len=3, k=64)
    assert short.fallback < 0.05 * 1000, short.fallback
    assert short.nbytes < 0.25 * 12 * 1000 * 500 * 4
    long = CompactOutputs(data.val_logits, data.val_labels, "max_prob", max_len=8, k=64)
    assert long.fallback > short.fallback


def test_frontier_with_compact_outputs_equals_full(monkeypatch):
    """Above the size limit the search reads the compact form; every candidate's figures are the
    same as with full softmaxes, and the search says which form it used."""
    logits = _logits(3, 4, 300, 30, 1.0, True)
    y = np.random.default_rng(0).integers(0, 30, 300)
    costs = {n: float(i + 1) for i, n in enumerate(logits)}
    data = SelectionData(logits, None, costs, val_labels=y)
    full = frontier(data, max_len=3)
    monkeypatch.setattr(frontier_module, "COMPACT_ABOVE", 0)
    monkeypatch.setattr(frontier_module, "COMPACT_K", 4)
    small = frontier(data, max_len=3)
    assert full.search.outputs == {"form": "full"}
    assert small.search.outputs["form"] == "compact" and small.search.outputs["k"] == 4
    for key in ("accuracy", "mean", "worst"):
        np.testing.assert_array_equal(full.table()[key], small.table()[key])
    cand = small.pareto()[-1]
    assert small.evaluate([cand])[0].val_exit_histogram == full.evaluate([cand])[0].val_exit_histogram


def test_compact_refuses_other_confidences():
    with pytest.raises(ValueError, match="max_prob"):
        CompactOutputs(_logits(0, 2, 5, 4, 1.0, False), None, "margin", max_len=2)
