"""The latency cost model: what a cascade costs at batch b, from a device profile.

A cascade call on a batch of b images runs stage k on the n_k samples still active (n_0 = b);
a stage is skipped when none is left (n_k = 0). So

    latency(b) = call(b) + sum_k stage_k(n_k)       (the sum over the stages run; stage_k(0) = 0)
    stage_k(n)  = member_k(n) + overhead_k(n)       (gather, preprocessing, inference, gate)

``stage_k(n)`` comes from the profile's one-stage runtime calls of member k (their latency minus
``call(n)``), so its overhead is what the runtime pays right after an inference, not the faster
figure of each part in a loop of its own (see :mod:`.profiler`); ``parts`` adds those up instead.

- **worst case**: every stage on the whole batch, n_k = b;
- **mean**: with a fraction r_k of the validation samples reaching stage k (from the exit
  histogram) and the batch's images drawn independently, n_k is binomial(b, r_k) and the stage's
  expected latency is ``sum_n P(n_k = n) stage_k(n)``; at batch 1 this is ``r_k stage_k(1)``.

Each operation's latency between profiled batch sizes is **linear in n** between the two
neighbouring profiled points, with (0, 0) as the first point; beyond the largest profiled batch B
it is ``n * latency(B) / B`` (the per-sample cost at B). Which statistic of the timings is used:
``mean_ms`` for a mean budget (expected values add up, and the mean keeps the time other
processes take from a call, as a deployment's mean does: on the shared 2-core development machine
medians under-predicted the example cascade's mean latency at batch 1 by about 40 %, means by
about 8 %; see docs/latency_benchmark.md), ``p90_ms`` for a worst-case budget (a sum of p90s
bounds the p90 of the sum in practice: a worst-case budget is a promise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from edge_committee.errors import EdgeCommitteeError
from edge_committee.select.data import StageCosts

STATS = ("median_ms", "mean_ms", "p90_ms", "p99_ms")
#: statistic used per budget kind (see the module docstring)
STAT_FOR_KIND = {"worst": "p90_ms", "mean": "mean_ms"}
#: reach fractions at which the expected stage latency is tabulated (then interpolated)
_REACH_POINTS = 1025


@dataclasses.dataclass(frozen=True)
class Curve:
    """Latency (ms) of one operation vs the number of samples n (see the module docstring)."""

    sizes: np.ndarray  #: profiled batch sizes, increasing, with 0 first
    ms: np.ndarray  #: latency at each size, 0 at size 0

    @classmethod
    def from_timings(cls, by_batch: Mapping[str, Mapping], stat: str) -> Curve:
        sizes = sorted(int(b) for b in by_batch)
        ms = [float(by_batch[str(b)][stat]) for b in sizes]
        return cls(np.array([0.0] + sizes), np.array([0.0] + ms))

    def __call__(self, n) -> np.ndarray:
        n = np.asarray(n, np.float64)
        inside = np.interp(n, self.sizes, self.ms)
        return np.where(n > self.sizes[-1], n * (self.ms[-1] / self.sizes[-1]), inside)


def binomial_pmf(b: int, reach: np.ndarray) -> np.ndarray:
    """(len(reach), b + 1): P(n = 0..b) for n ~ binomial(b, r), one row per r in [0, 1]."""
    r = np.clip(np.asarray(reach, np.float64), 0.0, 1.0)[:, None]
    n = np.arange(b + 1, dtype=np.float64)
    log_comb = np.concatenate([[0.0], np.cumsum(np.log((b - n[:-1]) / (n[:-1] + 1)))])
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = log_comb + n * np.log(r) + (b - n) * np.log1p(-r)
        pmf = np.exp(logp)
    pmf = np.where(r == 0.0, (n == 0).astype(np.float64), pmf)  # 0 * log 0 counts as 0
    return np.where(r == 1.0, (n == b).astype(np.float64), pmf)


@dataclasses.dataclass(frozen=True)
class LatencyModel:
    """Member and runtime-overhead curves of one profile; latencies in ms."""

    members: Mapping[str, Curve]  #: member inference
    stages: Mapping[str, Curve]  #: one-stage runtime calls (call included)
    preprocess: Mapping[str, Curve]
    gather: Curve
    gate: Curve
    call: Curve
    stat: str
    name: str = ""

    @classmethod
    def from_profile(cls, doc: Mapping, stat: str = "mean_ms") -> LatencyModel:
        """The model of a validated profile document (:func:`edge_committee.profile.read_profile`)."""
        if stat not in STATS:
            raise EdgeCommitteeError(f"unknown latency statistic {stat!r}; use one of {', '.join(STATS)}")
        ov = doc["overhead"]
        return cls(
            members={n: Curve.from_timings(m["batches"], stat) for n, m in doc["members"].items()},
            stages={n: Curve.from_timings(m["stage"], stat) for n, m in doc["members"].items()},
            preprocess={n: Curve.from_timings(t, stat) for n, t in ov["preprocess"].items()},
            gather=Curve.from_timings(ov["gather"], stat),
            gate=Curve.from_timings(ov["gate"], stat),
            call=Curve.from_timings(ov["call"], stat),
            stat=stat,
            name=str(doc.get("name", "")),
        )

    def _check(self, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in self.members or n not in self.preprocess]
        if missing:
            raise EdgeCommitteeError(
                f"the latency profile {self.name!r} has no timings for member {missing[0]!r} "
                f"(it has {', '.join(sorted(self.members))}); profile the bundle again"
            )

    def stage(self, name: str, n) -> np.ndarray:
        """Latency of member ``name``'s stage on ``n`` samples, as the runtime pays it: a one-stage
        call's latency minus the call's own work (never below the member's inference)."""
        self._check([name])
        return np.maximum(self.stages[name](n) - self.call(n), self.members[name](n))

    def parts(self, name: str, n) -> np.ndarray:
        """The stage's parts timed apart, added up: member + gather + preprocess + gate (a lower
        bound: each part in a loop of its own keeps the CPU caches warm)."""
        self._check([name])
        return self.members[name](n) + self.preprocess[name](n) + self.gather(n) + self.gate(n)

    def expected_stage(self, name: str, batch: int, reach) -> np.ndarray:
        """Expected latency of the stage when each of ``batch`` samples reaches it with
        probability ``reach`` (an array), exactly: sum_n binomial pmf * stage(n)."""
        reach = np.atleast_1d(np.asarray(reach, np.float64))
        return binomial_pmf(batch, reach) @ self.stage(name, np.arange(batch + 1))

    def worst(self, members: Sequence[str], batch: int) -> float:
        """Every stage on the whole batch, plus the per-call overhead."""
        return float(self.call(batch)) + sum(float(self.stage(m, batch)) for m in members)

    def mean(self, members: Sequence[str], batch: int, exit_histogram: Sequence[int]) -> float:
        """Expected latency per call with exits distributed as ``exit_histogram`` (counts per stage)."""
        hist = np.asarray(exit_histogram, np.float64)
        if hist.shape != (len(members),) or hist.sum() <= 0:
            raise EdgeCommitteeError(
                f"an exit histogram needs one count per stage ({len(members)}); got {list(exit_histogram)}"
            )
        reach = 1.0 - np.concatenate([[0.0], np.cumsum(hist)[:-1]]) / hist.sum()
        return float(self.call(batch)) + sum(
            float(self.expected_stage(m, batch, r)[0]) for m, r in zip(members, reach)
        )

    def stage_costs(self, names: Sequence[str], batch: int) -> StageCosts:
        """Selection costs at ``batch`` (:class:`~edge_committee.select.StageCosts`): each stage's
        expected latency tabulated at 1025 reach fractions and interpolated linearly between them."""
        self._check(names)
        if batch < 1:
            raise EdgeCommitteeError(f"the batch size a latency budget refers to must be >= 1, got {batch}")
        grid = np.linspace(0.0, 1.0, 2 if batch == 1 else _REACH_POINTS)  # batch 1: exactly linear
        pmf = binomial_pmf(batch, grid)
        n = np.arange(batch + 1)
        tables = {name: pmf @ self.stage(name, n) for name in names}
        expected = {name: _interp(grid, t) for name, t in tables.items()}
        desc = f"latency profile {self.name} ({self.stat.replace('_ms', '')} of each timing)"
        return StageCosts(expected, per_call=float(self.call(batch)), batch=batch, description=desc)


def _interp(grid: np.ndarray, table: np.ndarray):
    return lambda reach: np.interp(np.asarray(reach, np.float64), grid, table)
