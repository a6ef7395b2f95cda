"""Confidence intervals for validation accuracy, alone and paired against a reference member.

Selection compares candidates on a finite validation split; on a few hundred samples a cheaper
committee "as accurate as" the best member is often less accurate on new data. Two exact
(Clopper-Pearson) intervals at a two-sided level (e.g. 0.9):

- **accuracy**: k correct of n, the exact binomial interval for the accuracy;
- **paired difference** against a reference (candidate minus reference accuracy, same samples):
  with b samples only the candidate gets right and c only the reference gets right, conditionally
  on the m = b + c discordant samples b ~ Binomial(m, pi) (McNemar), so the exact interval
  [pi_lo, pi_hi] for pi gives ``m (2 pi - 1) / n`` for the difference. Samples on which both agree
  carry no information about the difference, which is why the paired interval is much narrower
  than the difference of two unpaired ones.

SciPy's beta quantiles are used when SciPy is installed, else an equivalent bisection on the
binomial tail in NumPy (same interval to ~1e-9).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

#: Level of the intervals shown in reports when none is asked for.
DEFAULT_LEVEL = 0.9


@dataclasses.dataclass(frozen=True)
class PairedInterval:
    """Candidate-minus-reference accuracy difference (fractions) with its interval."""

    reference: str
    difference: float
    low: float
    high: float
    level: float


def check_level(level: float) -> float:
    value = float(level)
    if not 0.0 < value < 1.0:
        from edge_committee.errors import EdgeCommitteeError

        raise EdgeCommitteeError(f"the confidence level must lie strictly between 0 and 1 (e.g. 0.9), got {level}")
    return value


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), by summing the pmf in log space."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    j = np.arange(k + 1, dtype=np.float64)
    steps = np.log((n - j[:-1]) / (j[:-1] + 1)) + math.log(p / (1 - p))
    logpmf = n * math.log1p(-p) + np.concatenate([[0.0], np.cumsum(steps)])
    top = logpmf.max()
    return float(min(1.0, math.exp(top) * np.exp(logpmf - top).sum()))


def _bisect(f, target: float) -> float:
    """p in [0, 1] with f(p) = target for f decreasing in p."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    """Exact two-sided binomial interval for a proportion, k successes of n."""
    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - level
    try:
        from scipy.stats import beta
    except ImportError:
        lo = 0.0 if k == 0 else _bisect(lambda p: _binom_cdf(k - 1, n, p), 1 - alpha / 2)
        hi = 1.0 if k == n else _bisect(lambda p: _binom_cdf(k, n, p), alpha / 2)
        return lo, hi
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def accuracy_interval(correct: np.ndarray, level: float) -> tuple[float, float]:
    """Exact interval for the accuracy of (N,) per-sample correctness."""
    correct = np.asarray(correct, bool)
    return clopper_pearson(int(correct.sum()), correct.size, level)


def paired_interval(correct: np.ndarray, reference: np.ndarray, level: float, name: str = "") -> PairedInterval:
    """Exact conditional interval of accuracy(correct) - accuracy(reference) on the same samples."""
    a, r = np.asarray(correct, bool), np.asarray(reference, bool)
    n = a.size
    b, c = int(np.sum(a & ~r)), int(np.sum(~a & r))
    m = b + c
    if n == 0 or m == 0:
        return PairedInterval(name, 0.0, 0.0, 0.0, level)
    lo, hi = clopper_pearson(b, m, level)
    return PairedInterval(name, (b - c) / n, m * (2 * lo - 1) / n, m * (2 * hi - 1) / n, level)
