"""Edges of the NumPy reference that the cross-implementation tests do not pin (mutmut survivors,
docs/mutation_testing.md): two-class margin, a known margin, the initial state, the messages of
the shape and count checks, a gate object's own state, costs of a three-stage cascade."""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.cascade import reference as R


def test_margin_of_two_classes_and_a_known_row():
    p2 = np.array([[0.5, 0.5], [0.9, 0.1]], np.float32)
    np.testing.assert_allclose(R.confidence(p2, "margin"), [0.0, 0.8], atol=1e-7)
    p3 = np.array([[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]], np.float32)
    np.testing.assert_allclose(R.confidence(p3, "margin"), [0.5, 0.1], atol=1e-7)
    np.testing.assert_array_equal(R.confidence(np.ones((3, 1), np.float32), "margin"), [1, 1, 1])


def test_the_initial_state_has_no_labels_and_everyone_active():
    s = R.GateState.start(3, 4)
    assert s.label.tolist() == [-1, -1, -1] and s.exit_stage.tolist() == [-1, -1, -1]
    assert s.active.tolist() == [0, 1, 2] and not s.prob_sum.any()


def test_checks_say_what_is_wrong():
    s = R.GateState.start(2, 3)
    with pytest.raises(ValueError, match=r"^stage 0: logits have shape \(2, 4\), expected \(2, 3\) for the "
                                         r"active samples$"):
        R.gate_step(s, np.zeros((2, 4), np.float32), 0, 2, 0.5)
    with pytest.raises(ValueError, match=r"^3 stages need 2 thresholds \(one per stage but the last\); got 0$"):
        R.run_cascade([np.zeros((1, 3), np.float32)] * 3, [])
    with pytest.raises(ValueError, match="^a cascade needs at least one member$"):
        R.run_cascade([], [])
    with pytest.raises(ValueError, match="^got 1 costs for 2 members$"):
        R.evaluate_cascade([np.zeros((1, 3), np.float32)] * 2, np.zeros(1, int), [0.5], [1.0])
    with pytest.raises(ValueError, match=r"^unknown confidence function 'x'; expected one of max_prob, margin, "
                                         r"neg_entropy$"):
        R.check_confidence_name("x")


def test_a_gate_object_makes_its_own_state():
    from edge_committee.cascade.learned import Combiner, LearnedGate

    logits = [np.array([[3.0, 0.0], [0.1, 0.0]], np.float32)] * 2
    gate = LearnedGate([Combiner(np.ones((k + 1, 2), np.float32) / (k + 1), np.zeros(2, np.float32))
                        for k in range(2)])
    res = R.run_cascade(logits, [0.9], gate=gate)
    assert res.exit_stage.tolist() == [0, 1] and res.label.tolist() == [0, 0]


def test_costs_of_a_three_stage_cascade():
    x = [np.array([[5.0, 0.0], [0.0, 0.1], [0.0, 0.1]], np.float32)] * 3
    ev = R.evaluate_cascade(x, np.array([0, 1, 1]), [0.9, 0.9], [1.0, 2.0, 4.0])
    assert ev.worst_cost == 7.0 and ev.exit_histogram == [1, 0, 2]
    assert ev.mean_cost == pytest.approx((1.0 + 7.0 + 7.0) / 3)  # no per-stage overhead by default
