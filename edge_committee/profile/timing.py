"""Timing one operation until the result is stable (trtexec's method).

Rule (:class:`TimingConfig`): warm up for ``warmup_s`` (at least ``min_warmup`` calls), then time
calls one by one. Every ``check_s`` seconds, stop when all of these hold:

- at least ``min_iters`` timed calls and ``min_time_s`` seconds of timing, and
- the medians of the first and the second half of the timed calls agree within ``tolerance``
  (relative to the overall median): the distribution no longer drifts (clocks, caches, a
  neighbour's burst of load);

or when ``max_time_s`` has passed (then ``stable`` is False and the figures are still reported).
Reported: median, p90, p99, mean and min of the wall time in ms, the iteration count, and the
device compute time's median where the callable reports one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

import numpy as np

from edge_committee.errors import EdgeCommitteeError


@dataclasses.dataclass(frozen=True)
class TimingConfig:
    """When to stop timing (see the module docstring); times in seconds."""

    warmup_s: float = 0.1
    min_warmup: int = 2
    min_iters: int = 10
    min_time_s: float = 0.2
    max_time_s: float = 2.0
    tolerance: float = 0.05
    check_s: float = 0.05

    def __post_init__(self) -> None:
        bad = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) < 0]
        if bad or self.min_iters < 1 or self.max_time_s < self.min_time_s:
            raise EdgeCommitteeError(
                f"timing settings must be >= 0, min_iters >= 1 and max_time >= min_time; got {self}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Figures of one timed operation; times in ms."""

    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    iterations: int
    stable: bool
    compute_median_ms: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_samples(cls, ms: np.ndarray, stable: bool, compute_ms: list[float] | None = None) -> Timing:
        ms = np.asarray(ms, np.float64)
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(ms.mean()), float(ms.min()), int(ms.size),
                   bool(stable), float(np.median(compute_ms)) if compute_ms else None)


def is_stable(ms: list[float], tolerance: float) -> bool:
    """True when the first and second half of ``ms`` have medians within ``tolerance`` of the
    overall median."""
    half = len(ms) // 2
    if half < 2:
        return False
    first, second, whole = np.median(ms[:half]), np.median(ms[half:]), np.median(ms)
    return abs(second - first) <= tolerance * whole


def measure(fn: Callable[[], object], cfg: TimingConfig = TimingConfig(),
            readings: Mapping[str, Callable[[], float | None]] | None = None,
            clock: Callable[[], float] = time.perf_counter) -> tuple[np.ndarray, dict[str, list[float]], bool]:
    """Call ``fn()`` by the rule of the module docstring: (wall ms per timed call, the values of
    each of ``readings`` read after every timed call (None readings skipped), stable)."""
    start, n = clock(), 0
    while n < cfg.min_warmup or clock() - start < cfg.warmup_s:
        fn()
        n += 1
    samples: list[float] = []
    read: dict[str, list[float]] = {k: [] for k in readings or {}}
    start = next_check = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) * 1e3)
        for key, reader in (readings or {}).items():
            if (value := reader()) is not None:
                read[key].append(float(value))
        if t1 < next_check:
            continue
        next_check = t1 + cfg.check_s
        elapsed = t1 - start
        if len(samples) >= cfg.min_iters and elapsed >= cfg.min_time_s and is_stable(samples, cfg.tolerance):
            return np.asarray(samples), read, True
        if elapsed >= cfg.max_time_s and len(samples) >= cfg.min_iters:
            return np.asarray(samples), read, False


def time_call(fn: Callable[[], object], cfg: TimingConfig = TimingConfig(),
              compute_ms: Callable[[], float | None] | None = None,
              clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``fn()`` by the rule of the module docstring.

    ``compute_ms``: read after each call; the device compute time of that call in ms, or None
    (e.g. ``lambda: runner.last_compute_ms``). ``clock``: seconds (default ``time.perf_counter``).
    """
    samples, read, stable = measure(fn, cfg, {"compute": compute_ms} if compute_ms else None, clock)
    return Timing.from_samples(samples, stable, read.get("compute"))
