"""Confidence intervals, the confidence-level choice, and memory-mapped outputs."""

from __future__ import annotations

import builtins
import math

import numpy as np
import pytest

from edge_committee.errors import EdgeCommitteeError
from edge_committee.select import frontier, select_cascade
from edge_committee.select.data import load_outputs_npz, mmap_npz
from edge_committee.select.intervals import clopper_pearson, paired_interval
from edge_committee.select.synthetic import synthetic_data


def test_clopper_pearson_known_values_and_numpy_fallback(monkeypatch):
    assert clopper_pearson(0, 10, 0.95)[1] == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)
    assert clopper_pearson(10, 10, 0.95)[0] == pytest.approx(0.025 ** (1 / 10), abs=1e-9)
    cases = [(0, 10), (3, 10), (480, 500), (37, 41), (200, 200)]
    with_scipy = [clopper_pearson(k, n, 0.9) for k, n in cases]
    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    without = [clopper_pearson(k, n, 0.9) for k, n in cases]
    np.testing.assert_allclose(with_scipy, without, atol=1e-8)


def test_paired_interval():
    rng = np.random.default_rng(0)
    ref = rng.random(400) < 0.8
    same = paired_interval(ref, ref, 0.9, "r")
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)
    other = ref.copy()
    other[:20] = ~other[:20]
    p = paired_interval(other, ref, 0.9, "r")
    assert p.difference == pytest.approx(other.mean() - ref.mean())
    assert p.low <= p.difference <= p.high
    wide = paired_interval(other, ref, 0.99, "r")
    assert wide.low < p.low and wide.high > p.high


def test_val_correct_matches_every_candidate(small_frontier):
    t = small_frontier.table()
    cands = [small_frontier.candidate(int(k), int(g), int(p))
             for k, g, p in zip(t["kind"], t["group"], t["point"])][::7]
    for c, correct in zip(cands, small_frontier.val_correct(cands)):
        assert correct.mean() == pytest.approx(c.val_accuracy, abs=1e-12), c.label


@pytest.mark.parametrize("seed", range(4))
def test_confidence_level_choice_is_not_worse_on_test_than_the_reference(seed):
    """The issue's failure: 500 validation samples, 'as accurate as the best member' overfits."""
    data = synthetic_data(5, 500, 20_000, seed=seed)
    plain = select_cascade(data, "accuracy", "best_single", max_len=3)
    sure = select_cascade(data, "accuracy", "best_single", max_len=3, confidence_level=0.9)
    ref = sure.frontier.reference_member
    (ref_eval,) = sure.frontier.evaluate([sure.frontier.candidate("single", sure.frontier._single_index(ref))])
    assert sure.chosen.paired.low >= 0.0
    assert sure.chosen.test_accuracy >= ref_eval.test_accuracy
    assert sure.warnings == []
    if plain.chosen.members != (ref,) and plain.chosen.paired.low < 0:
        assert plain.warnings and "--confidence-level" in plain.warnings[0]
    d = sure.to_dict()
    assert d["confidence_level"] == 0.9 and d["paired_reference"] == ref
    assert d["val_accuracy_interval"][0] <= d["val_accuracy"] <= d["val_accuracy_interval"][1]


def test_numeric_target_needs_the_lower_bound():
    data = synthetic_data(5, 500, 100, seed=1)
    res = select_cascade(data, "accuracy", 0.9, max_len=3, confidence_level=0.9)
    assert res.chosen.val_interval[0] >= 0.9
    assert clopper_pearson(round(res.chosen.val_accuracy * 500), 500, 0.9)[0] >= 0.9
    with pytest.raises(EdgeCommitteeError, match="lower bound"):
        select_cascade(data, "accuracy", 0.92, max_len=3, confidence_level=0.999)
    with pytest.raises(EdgeCommitteeError, match="strictly between 0 and 1"):
        select_cascade(data, "accuracy", 0.9, max_len=2, confidence_level=90)


def test_mmap_npz_and_memory_mapped_selection(tmp_path):
    data = synthetic_data(4, 300, 200, seed=4)
    arrays = {f"{m}/validation": x for m, x in data.val_logits.items()}
    arrays.update({f"{m}/test": x for m, x in data.test_logits.items()})
    arrays.update({"labels/validation": data.val_labels, "labels/test": data.test_labels})
    np.savez(tmp_path / "outputs.npz", **arrays)
    mapped = mmap_npz(tmp_path / "outputs.npz")
    assert all(isinstance(v, np.memmap) for v in mapped.values())
    np.savez_compressed(tmp_path / "packed.npz", **arrays)  # compressed members are read instead
    packed = mmap_npz(tmp_path / "packed.npz")
    for key, x in arrays.items():
        np.testing.assert_array_equal(mapped[key], x)
        np.testing.assert_array_equal(packed[key], x)
    macs = dict(data.costs)
    a = frontier(load_outputs_npz(tmp_path / "outputs.npz", macs, mmap=True), max_len=3).table()
    b = frontier(data, max_len=3).table()
    for key in ("accuracy", "mean", "worst"):
        np.testing.assert_array_equal(a[key], b[key])


def test_softmax_cache_budget_changes_nothing():
    from edge_committee.select.stats import SplitOutputs

    data = synthetic_data(4, 200, 10, seed=5)
    full = SplitOutputs(data.val_logits, data.val_labels, "max_prob")
    tiny = SplitOutputs(data.val_logits, data.val_labels, "max_prob", cache_bytes=1)
    for names in (["m0", "m2", "m3"], ["m1", "m3"]):
        for x, y in zip(full.sequence(names), tiny.sequence(names)):
            np.testing.assert_array_equal(x.conf, y.conf)
            np.testing.assert_array_equal(x.correct, y.correct)
    assert not tiny._probs and math.isfinite(float(full.probs("m0").sum()))
