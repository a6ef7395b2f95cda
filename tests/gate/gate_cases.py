"""Random cascades and a stage-by-stage comparison with the NumPy reference (shared by the gate tests).

Well-defined comparisons: every threshold is placed at least ``GAP`` away from every active sample's
confidence at that stage (so float rounding cannot flip an exit decision), and labels are compared
only where the reference's top-2 mean probabilities are exactly tied or more than ``GAP`` apart (a
near-tie could flip the argmax under rounding; exact ties resolve to the lowest index everywhere).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Protocol

import numpy as np

from edge_committee.cascade.reference import GateState, confidence, contributions, finite_rows, gate_step, softmax

#: Minimum distance between a threshold and a confidence, and between top-2 probabilities for labels.
GAP = 1e-5
#: Probability tolerance per contributing stage (the Done-when bound for float32 input).
PROB_ATOL = 1e-6
#: Confidence tolerance (neg_entropy sums C terms).
CONF_ATOL = 1e-5


class GateImpl(Protocol):
    """A gate under test: keeps its own state, steps, and shows it as a host GateState."""

    def start(self, n: int, c: int) -> None: ...
    def step(self, logits: np.ndarray, stage: int, num_stages: int, threshold: float, kind: str) -> None: ...
    def snapshot(self) -> GateState: ...


def make_logits(seed: int, n: int, c: int, k: int, dtype: str, nonfinite: float, scale: float) -> list[np.ndarray]:
    """K arrays (N, C) of logits; rows have random sharpness; some rows hold NaN / +inf / -inf."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        sharp = rng.uniform(0.2, 1.0, size=(n, 1)) * scale
        x = (rng.standard_normal((n, c)) * sharp).astype(np.float32)
        bad = rng.random(n) < nonfinite
        for i in np.flatnonzero(bad):
            x[i, rng.integers(c)] = rng.choice([np.nan, np.inf, -np.inf])
        out.append(x.astype(dtype))
    return out


def make_logits_nonfinite_stages(seed: int, n: int, c: int, k: int, dtype: str, scale: float) -> list[np.ndarray]:
    """K arrays (N, C) where each sample has non-finite rows in a random subset of the stages.

    Each sample gets its own rate (0.2..0.9), so some are non-finite in one stage, some in every
    stage but one, some in all: the mean must be over the stages that contributed (finding 19).
    """
    out = make_logits(seed, n, c, k, dtype, 0.0, scale)
    rng = np.random.default_rng(seed + 1)
    mask = rng.random((k, n)) < rng.uniform(0.2, 0.9, size=n)
    for stage, i in zip(*np.nonzero(mask)):
        out[stage][i, rng.integers(c)] = rng.choice([np.nan, np.inf, -np.inf])
    return out


def stage_confidences(state: GateState, logits: np.ndarray, stage: int, kind: str) -> np.ndarray:
    """Confidence of each active sample's running mean after this stage (reference math, no side effects)."""
    ok = finite_rows(logits)
    probs = softmax(np.where(ok[:, None], logits, 0))
    rows = state.prob_sum[state.active] + np.where(ok[:, None], probs, 0).astype(np.float32)
    return confidence(rows / contributions(rows)[:, None], kind)


def safe_threshold(confs: np.ndarray, quantile: float) -> float:
    """A threshold near the ``quantile`` of ``confs`` that is more than GAP from all of them."""
    values = np.unique(confs[np.isfinite(confs)].astype(np.float64))
    if values.size == 0:
        return 0.5
    candidates = [values[0] - 1.0, values[-1] + 1.0]
    gaps = np.diff(values)
    wide = np.flatnonzero(gaps > 4 * GAP)
    candidates += list((values[wide] + values[wide + 1]) / 2)
    target = float(np.quantile(values, quantile))
    return float(min(candidates, key=lambda t: abs(t - target)))


def _label_comparable(ref: GateState) -> np.ndarray:
    """Samples whose reference label is not a near-tie (exact ties are fine)."""
    exited = ref.exit_stage >= 0
    mean = ref.mean_probs()
    if mean.shape[1] < 2:
        return exited
    top2 = np.sort(mean, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    return exited & ((gap == 0) | (gap > GAP))


def compare(ref: GateState, got: GateState, where: str) -> None:
    """Assert that ``got`` matches the reference state (tolerances in the module doc)."""
    assert np.array_equal(got.active, ref.active), f"{where}: survivors differ\n{ref.active}\n{got.active}"
    assert np.array_equal(got.exit_stage, ref.exit_stage), f"{where}: exit stages differ"
    assert np.array_equal(got.flag, ref.flag), f"{where}: flags differ"
    # the stages that contributed to each sample (non-finite rows do not count), as the gate divides
    count = contributions(ref.prob_sum)[:, None].astype(np.float64)
    err = np.abs(got.prob_sum.astype(np.float64) - ref.prob_sum)
    assert np.all(err <= PROB_ATOL * count + 1e-12), f"{where}: prob_sum differs by {err.max():.3g}"
    mean_ref = ref.prob_sum / count
    mean_got = got.prob_sum / count
    assert np.abs(mean_got - mean_ref).max(initial=0) <= PROB_ATOL, f"{where}: mean probabilities differ"
    comparable = _label_comparable(ref)
    assert np.array_equal(got.label[comparable], ref.label[comparable]), f"{where}: labels differ"
    assert np.array_equal(np.isnan(got.conf), np.isnan(ref.conf)), f"{where}: NaN confidences differ"
    both = ~np.isnan(ref.conf)
    assert np.allclose(got.conf[both], ref.conf[both], rtol=0, atol=CONF_ATOL), f"{where}: confidences differ"


def run_and_compare(impl: GateImpl, logits: list[np.ndarray], kind: str, quantiles: list[float]) -> GateState:
    """Run the cascade through ``impl`` and the reference, comparing after every stage."""
    n, c = logits[0].shape
    k_total = len(logits)
    ref = GateState.start(n, c)
    impl.start(n, c)
    for k, x in enumerate(logits):
        if ref.active.size == 0:
            break
        xa = x[ref.active]
        last = k == k_total - 1
        threshold = np.inf if last else safe_threshold(stage_confidences(ref, xa, k, kind), quantiles[k % len(quantiles)])
        gate_step(ref, xa, k, k_total, threshold, kind)
        impl.step(xa, k, k_total, threshold, kind)
        compare(ref, impl.snapshot(), f"stage {k} ({kind}, {x.dtype}, N={n}, C={c})")
    return ref


class HostImpl:
    """A gate that works on a host GateState with a reference-like step function."""

    def __init__(self, step: Callable[..., GateState]) -> None:
        self._step = step
        self.state: GateState | None = None

    def start(self, n: int, c: int) -> None:
        self.state = GateState.start(n, c)

    def step(self, logits: np.ndarray, stage: int, num_stages: int, threshold: float, kind: str) -> None:
        self._step(self.state, logits, stage, num_stages, threshold, kind)

    def snapshot(self) -> GateState:
        return copy.deepcopy(self.state)
