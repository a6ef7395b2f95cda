"""Selection for segmentation: mIoU from one confusion matrix, MACs per frame, fronts and choices."""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.cascade.tiles import miou_from_confusion
from edge_committee.evaluate.dense import DenseSplitStats, PrefixStats, chains
from edge_committee.select import dense as D


def _stats(seed: int = 0, frames: int = 5, per_frame: int = 4, c: int = 3) -> DenseSplitStats:
    """Synthetic per-tile statistics for members a (cheap) < b < d; later stages are better on average."""
    rng = np.random.default_rng(seed)
    tiles = frames * per_frame
    prefixes = {}
    for p in [("a",), ("b",), ("d",), ("a", "b"), ("a", "d"), ("b", "d"), ("a", "b", "d")]:
        quality = len(p) + (p[-1] == "d")
        cm = rng.integers(0, 5, (tiles, c, c + 1)).astype(np.int32)
        cm[:, np.arange(c), np.arange(c)] += rng.integers(0, 6 * quality, (tiles, c)).astype(np.int32)
        prefixes[p] = PrefixStats(rng.random(tiles).astype(np.float32), np.ones(tiles, bool), cm)
    prefixes[("a",)].ok[3] = False  # a non-finite tile never exits at stage 0
    return DenseSplitStats(frames, per_frame, c, prefixes, {})


COSTS = D.DenseCosts({"a": 10.0, "b": 40.0, "d": 100.0}, {"a": 3.0, "b": 12.0, "d": 30.0})


def test_chains_cheapest_first_and_any_order():
    assert chains(["d", "a", "b"], 3, costs=COSTS.frame) == [("a", "b"), ("a", "d"), ("b", "d"), ("a", "b", "d")]
    assert len(chains(["a", "b", "d"], 2, order="any")) == 6


def test_miou_batch_equals_miou_from_confusion():
    cms = _stats().prefixes[("a", "b")].cm
    np.testing.assert_allclose(D.miou_batch(cms), [miou_from_confusion(x) for x in cms])


@pytest.mark.parametrize("members", [("a", "b"), ("a", "b", "d")])
def test_front_points_are_what_the_thresholds_give(members):
    s = _stats()
    f = D.sequence_front(s, members, COSTS, grid=8)
    acc, macs = D.score(s, members, D.exit_stages(s, members, f.thresholds), COSTS)
    np.testing.assert_allclose(f.accuracy, acc, atol=1e-12)
    np.testing.assert_allclose(f.mean_cost, macs)
    assert (np.diff(f.mean_cost) > 0).all() and (np.diff(f.accuracy) > 0).all()  # a Pareto set
    assert f.worst_cost == COSTS.frame["a"] + 4 * sum(COSTS.window[m] for m in members[1:])
    stage = D.exit_stages(s, members, f.thresholds)
    assert (stage[:, 3] >= 1).all()  # the non-finite tile of member a never exits there


def test_exit_rule_is_greater_or_equal():
    s = _stats()
    conf = s.prefixes[("a",)].conf
    t = float(conf[7])
    stage = D.exit_stages(s, ("a", "b"), np.array([[t]]))[0]
    assert stage[7] == 0
    np.testing.assert_array_equal(stage == 0, (conf >= np.float32(t)) & s.prefixes[("a",)].ok)


def test_choices_for_a_budget_and_a_target():
    s = _stats()
    res = D.select_dense(s, s, COSTS, [("a", "b"), ("a", "d")], "mean_cost", 60.0)
    assert res.chosen.mean_cost <= 60.0 and res.chosen.test_accuracy == pytest.approx(res.chosen.val_accuracy)
    front = res.frontier
    best = max(c.val_accuracy for c in front.pareto(D.DENSE_KINDS) if c.mean_cost <= 60.0)
    assert res.chosen.val_accuracy == best and front.accuracy_metric == "mIoU"
    res = D.select_dense(s, None, COSTS, [("a", "b")], "accuracy", "best_single")
    assert res.chosen.val_accuracy >= max(x.accuracy for x in front.singles)
    with pytest.raises(Exception, match="below every candidate"):
        D.select_dense(s, None, COSTS, [("a", "b")], "mean_cost", 1.0)
