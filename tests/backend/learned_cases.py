"""Learned cascades with known logits for the device runtime, and their comparison with the NumPy reference.

Shared by the CPU tests (:mod:`test_device_learned`) and the GPU tests. Combiners are random (no
fitting: the gate must follow whatever numbers the bundle holds), thresholds are placed at least
``GAP`` away from every confidence a sample has at that stage under the *learned* combination, so
float rounding cannot flip an exit decision, and labels are compared where the reference's top-2
probabilities are tied exactly or more than ``GAP`` apart (as :mod:`device_cases`).
"""

from __future__ import annotations

import copy

import numpy as np
from gate_cases import CONF_ATOL, GAP, make_logits, safe_threshold

from edge_committee.cascade.learned import Combiner, LearnedGateState, learned_gate_step, run_learned_cascade
from edge_committee.cascade.reference import confidence

#: probabilities of a combination: torch and NumPy log-softmax/exp differ by an ulp or two, which
#: the weights (up to 1.2 per member) carry into z; measured differences are below 1e-6
PROB_ATOL = 2e-6


def random_combiners(seed: int, k: int, c: int) -> list[Combiner]:
    """Stage ``j``'s combiner over ``j + 1`` members: weights in [0.2, 1.2], bias ~ N(0, 0.5)."""
    rng = np.random.default_rng(seed)
    return [Combiner(rng.uniform(0.2, 1.2, (j + 1, c)), rng.normal(0.0, 0.5, c)) for j in range(k)]


def make_learned_case(seed: int, n: int, c: int, k: int, kind: str, quantiles=(0.3, 0.6, 0.8),
                      nonfinite: float = 0.1, scale: float = 6.0, dtype: str = "float32"):
    """(member logits tables, thresholds, combiners) with thresholds safe for comparison."""
    logits = make_logits(seed, n, c, k, dtype, nonfinite, scale)
    combiners = random_combiners(seed + 100, k, c)
    state = LearnedGateState.start(n, c)
    thresholds = []
    for stage in range(k - 1):
        if state.active.size == 0:
            thresholds.append(0.5)
            continue
        trial = copy.deepcopy(state)  # the confidences this stage will see, without deciding
        learned_gate_step(trial, logits[stage][state.active], stage, k, np.inf, kind, combiners[stage])
        conf = confidence(trial.prob_sum[state.active], kind)
        t = safe_threshold(conf, quantiles[stage % len(quantiles)])
        thresholds.append(t)
        learned_gate_step(state, logits[stage][state.active], stage, k, t, kind, combiners[stage])
    return logits, thresholds, combiners


def reference(tables, thresholds, combiners, kind):
    """The NumPy reference result (``run_learned_cascade``) of a case."""
    return run_learned_cascade([np.asarray(t, np.float32) for t in tables], thresholds, combiners, kind)


def comparable_labels(probs: np.ndarray) -> np.ndarray:
    """Rows whose top-2 probabilities are exactly tied or more than GAP apart."""
    if probs.shape[1] < 2:
        return np.ones(len(probs), bool)
    top2 = np.sort(probs, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    return (gap == 0) | (gap > GAP)


def assert_matches_learned(pred, ref, where: str = "") -> None:
    """A :class:`Prediction` equals the reference ``CascadeResult`` of a learned cascade."""
    assert np.array_equal(pred.exit_stage, ref.exit_stage), f"{where}: exit stages differ"
    assert np.array_equal(pred.flags, ref.flag), f"{where}: flags differ"
    ok = comparable_labels(ref.probs)
    assert np.array_equal(pred.labels[ok], ref.label[ok]), f"{where}: labels differ"
    err = np.abs(np.asarray(pred.probs, np.float64) - ref.probs).max(initial=0)
    assert err <= PROB_ATOL, f"{where}: probs differ by {err:.3g}"
    assert np.array_equal(np.isnan(pred.confidence), np.isnan(ref.confidence)), f"{where}: NaN confidences differ"
    both = ~np.isnan(ref.confidence)
    assert np.allclose(pred.confidence[both], ref.confidence[both], rtol=0, atol=CONF_ATOL), \
        f"{where}: confidences differ"
