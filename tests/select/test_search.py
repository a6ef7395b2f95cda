"""The threshold search against brute force over every threshold combination."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_committee.cascade.reference import (
    confidence,
    contributions,
    evaluate_cascade,
    finite_rows,
    softmax,
)
from edge_committee.select import SelectionData, frontier, pareto_indices
from edge_committee.select.search import grid_front
from edge_committee.select.synthetic import synthetic_data


def _stage_confidences(logits, kind):
    """Distinct confidences of the running mean after each stage (the reference's arithmetic)."""
    out, ps = [], np.float32(0)
    for k, x in enumerate(logits):
        ok = finite_rows(x)[:, None]
        ps = ps + np.where(ok, softmax(np.where(ok, x, 0)), np.float32(0))
        out.append(sorted(set(confidence(ps / contributions(ps)[:, None], kind).tolist())))
    return out


def _brute_force(data, members, kind, overhead):
    """(P, 2) Pareto set (mean cost, accuracy) over every threshold combination, via the reference."""
    logits = [data.val_logits[m] for m in members]
    costs = [data.costs[m] for m in members]
    choices = [v + [-np.inf, np.inf] for v in _stage_confidences(logits, kind)[:-1]]
    pts = []
    for combo in itertools.product(*choices):
        ev = evaluate_cascade(logits, data.val_labels, combo, costs, kind, overhead)
        pts.append((ev.mean_cost, ev.accuracy))
    pts = np.array(pts)
    return pts[pareto_indices(pts[:, 0], pts[:, 1])]


@pytest.mark.parametrize("kind", ["max_prob", "margin", "neg_entropy"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_front_equals_brute_force_3_members_30_samples(kind, seed):
    data = synthetic_data(num_members=3, num_val=30, num_test=10, seed=seed)
    front = frontier(data, max_len=3, confidence=kind, stage_overhead=5e6)
    assert len(front.cascades) == 4  # (0,1), (0,2), (1,2), (0,1,2)
    for f in front.cascades:
        expected = _brute_force(data, f.members, kind, 5e6)
        got = np.stack([f.mean_cost, f.accuracy], axis=1)
        assert f.eps_accuracy == 0.0
        assert got.shape == expected.shape, f.members
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_front_points_reproduce_with_reference(small_data, small_frontier):
    """Every returned threshold vector gives exactly the claimed accuracy and mean cost."""
    for f in small_frontier.cascades[::3]:
        logits = [small_data.val_logits[m] for m in f.members]
        costs = [small_data.costs[m] for m in f.members]
        for i in np.linspace(0, f.accuracy.size - 1, 5).astype(int):
            ev = evaluate_cascade(logits, small_data.val_labels, f.thresholds[i], costs, "max_prob", 1e6)
            assert ev.accuracy == f.accuracy[i]
            assert ev.mean_cost == pytest.approx(f.mean_cost[i], rel=1e-12)
            assert ev.worst_cost == pytest.approx(f.worst_cost, rel=1e-12)


@pytest.mark.parametrize("resolution", [2, 4, 7])
def test_coarse_grid_is_an_eps_pareto_set(resolution):
    """With fewer grid values than confidences every brute-force point is covered within eps."""
    data = synthetic_data(num_members=3, num_val=30, num_test=10, seed=4)
    front = frontier(data, max_len=3, grid={2: resolution, 3: resolution})
    assert any(f.eps_accuracy > 0 for f in front.cascades)
    for f in front.cascades:
        got = np.stack([f.mean_cost, f.accuracy], axis=1)
        for cost, acc in _brute_force(data, f.members, "max_prob", 0.0):
            cheaper = got[:, 0] <= cost * (1 + 1e-12)
            assert cheaper.any() and got[cheaper, 1].max() >= acc - f.eps_accuracy - 1e-12


def test_non_finite_rows_follow_the_reference():
    data = synthetic_data(num_members=3, num_val=30, num_test=10, seed=5)
    logits = dict(data.val_logits)
    bad = logits["m0"].copy()
    bad[[1, 7]] = np.nan
    bad[3, 2] = np.inf
    logits["m0"] = bad
    mid = logits["m1"].copy()
    mid[7] = -np.inf  # sample 7: no member before the last contributes
    logits["m1"] = mid
    data.val_logits = logits
    front = frontier(data, max_len=3)
    for f in front.cascades:
        expected = _brute_force(data, f.members, "max_prob", 0.0)
        np.testing.assert_allclose(np.stack([f.mean_cost, f.accuracy], 1), expected, rtol=1e-12)


def test_grid_front_matches_sorting_pareto():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 300))
        count = rng.integers(0, 40, n).astype(float)
        cost = rng.integers(0, 25, n).astype(float)
        a = grid_front(cost, count)
        b = pareto_indices(cost, count)
        np.testing.assert_array_equal(np.c_[cost[a], count[a]], np.c_[cost[b], count[b]])
        assert np.all(np.diff(cost[a]) > 0) and np.all(np.diff(count[a]) > 0)


def test_any_order_enumerates_permutations(small_data):
    front = frontier(small_data, max_len=3, order="any")
    n = len(small_data.names)
    assert len(front.cascades) == n * (n - 1) + n * (n - 1) * (n - 2)
    assert len(front.ensembles) == n * (n - 1) // 2 + n * (n - 1) * (n - 2) // 6
    assert ("m4", "m0") in {f.members for f in front.cascades}


@given(
    n=st.integers(1, 18),
    c=st.integers(2, 4),
    members=st.integers(2, 3),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([0.3, 1.0, 4.0]),
    kind=st.sampled_from(["max_prob", "margin", "neg_entropy"]),
)
@settings(max_examples=25, deadline=None)
def test_front_equals_brute_force_random(n, c, members, seed, scale, kind):
    """Random tiny committees, including ties (rounded logits) and equal costs."""
    rng = np.random.default_rng(seed)
    names = [f"x{i}" for i in range(members)]
    val = {m: np.round(rng.standard_normal((n, c)) * scale, 1).astype(np.float32) for m in names}
    costs = {m: float(rng.choice([1.0, 2.0, 5.0])) for m in names}
    data = SelectionData(val, None, costs, rng.integers(0, c, n))
    front = frontier(data, max_len=members, confidence=kind, stage_overhead=0.5)
    for f in front.cascades:
        expected = _brute_force(data, f.members, kind, 0.5)
        np.testing.assert_allclose(np.stack([f.mean_cost, f.accuracy], 1), expected, rtol=1e-12)


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 300), k=st.integers(2, 5), res=st.integers(1, 12),
       c=st.integers(2, 5), overhead=st.sampled_from([0.0, 0.3]))
@settings(max_examples=40, deadline=None)
def test_native_grid_front_is_bit_identical_to_numpy(seed, n, k, res, c, overhead):
    """The extension's one-pass tally + Pareto set gives the NumPy path's points exactly (same
    flat indices, counts and float64 costs), for any sequence length and coarse or exact grids."""
    from edge_committee.select.search import _native_front, front_of_grid, make_grid
    from edge_committee.select.stats import SplitOutputs

    if _native_front() is None:
        pytest.skip("edge_committee._C without select_grid_front")
    rng = np.random.default_rng(seed)
    names = [f"x{i}" for i in range(k)]
    logits = {m: np.round(rng.standard_normal((n, c)) * 2, 1).astype(np.float32) for m in names}
    split = SplitOutputs(logits, rng.integers(0, c, n), "max_prob")
    path = split.sequence(names)
    all_c = np.logical_and.reduce([p.correct for p in path])
    any_c = np.logical_or.reduce([p.correct for p in path])
    grids = [make_grid(p.conf, p.ok, any_c & ~all_c, res if seed % 2 else None) for p in path[:-1]]
    cost = [float(x) + overhead for x in rng.choice([1.0, 2.5, 7.0], k)]
    a = front_of_grid(path, cost, grids, native=True)
    b = front_of_grid(path, cost, grids, native=False)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # the grids and the prefix statistics without the extension are the same too
    import edge_committee.select.search as search
    import edge_committee.select.stats as stats

    saved = search._native, stats.native
    search._native = stats.native = lambda name: None
    try:
        plain = SplitOutputs(logits, split.target, "max_prob").sequence(names)
        plain_grids = [make_grid(p.conf, p.ok, any_c & ~all_c, res if seed % 2 else None) for p in plain[:-1]]
    finally:
        search._native, stats.native = saved
    for p, q in zip(path, plain):
        np.testing.assert_array_equal(p.conf, q.conf)
        np.testing.assert_array_equal(p.label, q.label)
    for g, h in zip(grids, plain_grids):
        np.testing.assert_array_equal(g.values, h.values)
        np.testing.assert_array_equal(g.bucket, h.bucket)
        assert g.gap == h.gap
