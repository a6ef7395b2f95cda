"""The NumPy reference cascade: the semantics every kernel is tested against."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_committee.cascade import reference as ref


def logits_for(n, c, k, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 2, (n, c)).astype(np.float32) for _ in range(k)]


def naive_cascade(member_logits, thresholds, kind):
    """A per-sample loop written straight from the definition (independent of gate_step)."""
    n = member_logits[0].shape[0]
    probs = [ref.softmax(x) for x in member_logits]
    labels, stages = [], []
    for i in range(n):
        for k in range(len(member_logits)):
            mean = np.mean([p[i] for p in probs[: k + 1]], axis=0)
            conf = ref.confidence(mean[None], kind)[0]
            if k == len(member_logits) - 1 or conf >= thresholds[k]:
                labels.append(int(np.argmax(mean)))
                stages.append(k)
                break
    return np.array(labels), np.array(stages)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(2, 12), st.integers(1, 4), st.sampled_from(ref.CONFIDENCE_FUNCTIONS),
       st.integers(0, 10_000))
def test_matches_the_definition(n, c, k, kind, seed):
    ls = logits_for(n, c, k, seed)
    confs = [ref.confidence(ref.softmax(x), kind) for x in ls]
    thr = [float(np.quantile(cf, 0.5)) + 1e-4 for cf in confs[:-1]]
    res = ref.run_cascade(ls, thr, kind)
    labels, stages = naive_cascade(ls, thr, kind)
    np.testing.assert_array_equal(res.label, labels)
    np.testing.assert_array_equal(res.exit_stage, stages)
    np.testing.assert_allclose(res.probs.sum(axis=1), 1.0, rtol=1e-5)


def test_thresholds_extremes():
    ls = logits_for(50, 5, 3, 0)
    all_first = ref.run_cascade(ls, [-np.inf, -np.inf])
    assert (all_first.exit_stage == 0).all()
    np.testing.assert_array_equal(all_first.label, ls[0].argmax(1))
    none_early = ref.run_cascade(ls, [np.inf, np.inf])
    assert (none_early.exit_stage == 2).all()
    np.testing.assert_allclose(none_early.probs, ref.ensemble(ls), atol=1e-6)


def test_confidence_functions():
    p = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]], np.float32)
    np.testing.assert_allclose(ref.confidence(p, "max_prob"), [0.7, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(ref.confidence(p, "margin"), [0.5, 0.0], atol=1e-6)
    ent = -np.sum(p * np.log(p), axis=1)
    np.testing.assert_allclose(ref.confidence(p, "neg_entropy"), -ent, rtol=1e-5)
    assert ref.confidence(np.array([[1.0, 0.0]]), "neg_entropy")[0] == 0.0  # 0 log 0 = 0
    with pytest.raises(ValueError, match="unknown confidence function 'entropy'"):
        ref.confidence(p, "entropy")


def test_evaluate_cascade_costs():
    ls = logits_for(100, 4, 2, 3)
    y = ls[1].argmax(1)
    t = float(np.median(ref.confidence(ref.softmax(ls[0]))))
    ev = ref.evaluate_cascade(ls, y, [t], [10.0, 100.0], stage_overhead=1.0)
    res = ref.run_cascade(ls, [t])
    n_first = int((res.exit_stage == 0).sum())
    assert ev.exit_histogram == [n_first, 100 - n_first]
    assert ev.worst_cost == 112.0
    assert ev.mean_cost == pytest.approx((n_first * 11 + (100 - n_first) * 112) / 100)
    assert ev.accuracy == pytest.approx(np.mean(res.label == y))


def test_non_finite_logits_never_exit_early_and_are_flagged():
    a = np.array([[5.0, 0.0, 0.0], [np.nan, 0.0, 0.0], [np.inf, 0.0, 0.0]], np.float32)
    b = np.array([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [np.nan, 1, 1]], np.float32)
    res = ref.run_cascade([a, b], [0.5])
    assert res.exit_stage.tolist() == [0, 1, 1]
    assert res.flag.tolist() == [0, 1, 1]
    assert res.label[1] == 2  # only the finite stage contributed
    assert res.label[2] == -1 and np.isnan(res.confidence[2])  # no finite stage at all


def test_threshold_count_checked():
    with pytest.raises(ValueError, match="3 stages need 2 thresholds"):
        ref.run_cascade(logits_for(3, 3, 3, 0), [0.5])


def test_gate_step_compacts_in_order():
    ls = logits_for(20, 3, 2, 7)
    state = ref.GateState.start(20, 3)
    conf = ref.confidence(ref.softmax(ls[0]))
    t = float(np.median(conf))
    ref.gate_step(state, ls[0], 0, 2, t)
    expected = np.flatnonzero(conf < t)
    np.testing.assert_array_equal(state.active, expected)
    assert all(a < b for a, b in itertools.pairwise(state.active))
