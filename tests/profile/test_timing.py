"""The trtexec-style timing rule, driven by a fake clock (no real waiting)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.errors import EdgeCommitteeError
from edge_committee.profile.timing import Timing, TimingConfig, is_stable, time_call


class FakeClock:
    """A clock that only moves when the timed function runs: each call takes the next duration."""

    def __init__(self, durations_ms):
        self.now = 0.0
        self.durations = iter(durations_ms)
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.calls += 1
        self.now += next(self.durations) / 1e3


CFG = TimingConfig(warmup_s=0.01, min_warmup=2, min_iters=10, min_time_s=0.05, max_time_s=0.5,
                   tolerance=0.05, check_s=0.0)


def test_steady_calls_stop_once_min_iters_and_min_time_are_met():
    clock = FakeClock(iter(lambda: 2.0, None))  # every call 2 ms
    t = time_call(clock.work, CFG, clock=clock)
    assert t.stable and t.median_ms == pytest.approx(2.0) and t.p99_ms == pytest.approx(2.0)
    assert t.iterations == 25  # 0.05 s of 2 ms calls (>= 10 iterations)
    assert clock.calls == 25 + 5  # warm-up: 10 ms of 2 ms calls, at least 2


def test_drift_keeps_timing_until_max_time_and_says_unstable():
    durations = (1.0 + 0.01 * i for i in range(100_000))  # slower and slower: halves never agree
    clock = FakeClock(durations)
    t = time_call(clock.work, CFG, clock=clock)
    assert not t.stable
    assert sum(1.0 + 0.01 * i for i in range(t.iterations)) / 1e3 >= CFG.max_time_s * 0.9


def test_warming_up_calls_delay_the_stop_until_the_halves_agree():
    # 60 calls slowing from 5 ms to 1 ms (caches, clocks), then 1 ms for good
    clock = FakeClock(list(np.linspace(5.0, 1.0, 60)) + [1.0] * 10_000)
    t = time_call(clock.work, CFG, clock=clock)
    assert t.stable and t.median_ms == pytest.approx(1.0)
    assert t.iterations >= 200  # the first half's median reaches 1 ms only when 1 ms calls dominate it


def test_min_iters_wins_over_min_time_for_slow_calls():
    clock = FakeClock(iter(lambda: 400.0, None))
    t = time_call(clock.work, CFG, clock=clock)
    assert t.iterations == CFG.min_iters


def test_percentiles_and_compute_time():
    ms = np.arange(1, 101, dtype=float)
    t = Timing.from_samples(ms, True, compute_ms=[0.5, 0.7, 0.9])
    assert (t.median_ms, t.min_ms, t.mean_ms) == (50.5, 1.0, 50.5)
    assert t.p90_ms == pytest.approx(90.1) and t.p99_ms == pytest.approx(99.01)
    assert t.compute_median_ms == 0.7
    assert Timing.from_samples(ms, True).compute_median_ms is None


def test_is_stable():
    assert is_stable([1.0] * 4, 0.05)
    assert not is_stable([1.0, 1.0, 2.0, 2.0], 0.05)
    assert not is_stable([1.0, 1.0], 0.05)  # too few to tell


def test_bad_settings_are_a_users_mistake():
    with pytest.raises(EdgeCommitteeError, match="min_iters >= 1"):
        TimingConfig(min_iters=0)
    with pytest.raises(EdgeCommitteeError, match="max_time >= min_time"):
        TimingConfig(min_time_s=3.0, max_time_s=1.0)
