"""Finding 19: after a stage with non-finite logits, the mean is over the stages that contributed.

Probe P13: cascade [NaN member, good member] gave probabilities summing to 0.5 and a halved
confidence. Each contributing stage adds one softmax row (sum 1), so the number of stages that
contributed to a sample is round(sum(prob_sum row)).
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS, GateState, gate_step, run_cascade, softmax


def _logits(seed: int, n: int = 64, c: int = 10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c)) * rng.uniform(0.5, 4, (n, 1))).astype(np.float32)


@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
def test_a_nan_first_stage_does_not_deflate_the_second(kind):
    good = _logits(0)
    res = run_cascade([np.full_like(good, np.nan), good], [0.5], kind)
    alone = run_cascade([good], [], kind)
    np.testing.assert_allclose(res.probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(res.probs, alone.probs)  # the mean of one contribution is that contribution
    np.testing.assert_array_equal(res.confidence, alone.confidence)
    np.testing.assert_array_equal(res.label, alone.label)
    assert res.flag.tolist() == [1] * len(good) and res.exit_stage.tolist() == [1] * len(good)


def test_a_nonfinite_middle_stage_is_skipped_in_the_mean():
    a, b, c = _logits(1), _logits(2), _logits(3)
    b[::2, 3] = np.inf  # even samples: stage 1 contributes nothing
    res = run_cascade([a, b, c], [2.0, 2.0])  # thresholds above any confidence: all run 3 stages
    with np.errstate(invalid="ignore"):  # b's even rows hold inf; only its odd rows are used
        pa, pb, pc = softmax(a), softmax(b), softmax(c)
    even = ((pa + pc) / np.float32(2))[::2]
    odd = ((pa + pb + pc) / np.float32(3))[1::2]
    np.testing.assert_allclose(res.probs[::2], even, atol=1e-6)
    np.testing.assert_allclose(res.probs[1::2], odd, atol=1e-6)
    np.testing.assert_allclose(res.confidence[::2], even.max(axis=1), atol=1e-6)
    assert res.flag[::2].tolist() == [1] * 32 and res.flag[1::2].tolist() == [0] * 32


def test_exit_decision_uses_the_contributing_mean():
    """A sample that skipped stage 0 exits at stage 1 on its one contribution's confidence."""
    sharp = np.zeros((2, 3), np.float32)
    sharp[:, 0] = 10.0  # confidence ~0.9999 alone; ~0.5 if divided by 2 stages
    state = GateState.start(2, 3)
    gate_step(state, np.array([[np.nan, 0, 0], [0, 0, 0]], np.float32), 0, 3, 0.9)
    gate_step(state, sharp, 1, 3, 0.9)
    assert state.exit_stage.tolist() == [1, -1]  # sample 1 contributed twice (uniform + sharp): mean 0.67
    assert state.conf[0] > 0.99
    np.testing.assert_allclose(state.mean_probs()[0].sum(), 1.0, atol=1e-6)
