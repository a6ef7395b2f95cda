"""The latency cost model: interpolation, the binomial expectation, worst and mean cases."""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.errors import EdgeCommitteeError
from edge_committee.profile import LatencyModel, check_profile
from edge_committee.profile.costmodel import Curve, binomial_pmf

from .conftest import synthetic_profile

# a fixed cost plus a per-sample cost, as CPU inference behaves (ms)
MEMBERS = {
    "a": {1: 0.10, 8: 0.30, 64: 2.0},
    "b": {1: 0.50, 8: 1.60, 64: 11.0},
    "c": {1: 1.00, 8: 3.50, 64: 25.0},
}


@pytest.fixture
def model() -> LatencyModel:
    return LatencyModel.from_profile(check_profile(synthetic_profile(MEMBERS), "test"), "median_ms")


def test_curve_is_linear_between_points_through_zero_and_per_sample_beyond():
    c = Curve.from_timings({"1": {"m": 1.0}, "8": {"m": 3.0}, "64": {"m": 17.0}}, "m")
    assert c(0) == 0.0 and c(1) == 1.0 and c(8) == 3.0
    assert c(4.5) == pytest.approx(2.0)  # halfway between 1 and 8
    assert c(36) == pytest.approx(10.0)  # halfway between 8 and 64
    assert c(128) == pytest.approx(34.0)  # 2 x the cost at the largest profiled batch
    assert c(0.25) == pytest.approx(0.25)


def test_binomial_pmf_matches_a_direct_computation():
    from math import comb

    for b in (1, 5, 64):
        for r in (0.0, 0.3, 1.0):
            want = [comb(b, n) * r**n * (1 - r) ** (b - n) for n in range(b + 1)]
            assert np.allclose(binomial_pmf(b, np.array([r]))[0], want, atol=1e-12)


def test_a_stage_costs_what_the_runtime_pays_and_its_parts_less(model):
    # one-stage call minus the call's own work; its overhead is twice the parts' (cold caches)
    assert model.stage("b", 8) == pytest.approx(1.60 + 2 * (0.16 + 0.02))
    assert model.parts("b", 8) == pytest.approx(1.60 + 0.16 + 0.02)  # member + preprocess + gather + gate
    assert model.stage("b", 0) == 0.0  # a stage nobody reaches is skipped
    assert model.stage("b", 4.5) == pytest.approx((model.stage("b", 1) + model.stage("b", 8)) / 2)


def test_worst_runs_every_stage_on_the_whole_batch(model):
    want = 0.01 + sum(model.stage(m, 64) for m in "abc")
    assert model.worst(["a", "b", "c"], 64) == pytest.approx(want)


def test_mean_at_batch_1_weights_stages_by_their_reach(model):
    hist = [60, 30, 10]  # 100 samples: all run a, 40 run b, 10 run c
    want = 0.01 + model.stage("a", 1) + 0.4 * model.stage("b", 1) + 0.1 * model.stage("c", 1)
    assert model.mean(["a", "b", "c"], 1, hist) == pytest.approx(want)


def test_mean_at_a_batch_matches_a_simulation_of_random_batches(model):
    """The exact binomial expectation equals the average over many simulated batches."""
    rng = np.random.default_rng(0)
    b, hist = 64, [700, 200, 100]
    exit_stage = np.repeat([0, 1, 2], hist)
    batches = rng.choice(exit_stage, (20_000, b))  # each row: the exit stages of one random batch
    sims = 0.01 + sum(model.stage(m, (batches >= k).sum(axis=1)) for k, m in enumerate("abc"))
    assert model.mean(["a", "b", "c"], b, hist) == pytest.approx(sims.mean(), rel=0.005)
    # ... and is not what scaling the whole-batch cost by the reach would give (fixed costs)
    naive = 0.01 + sum(r * float(model.stage(m, b)) for m, r in zip("abc", (1.0, 0.3, 0.1)))
    assert abs(model.mean(["a", "b", "c"], b, hist) - naive) > 0.05


def test_stage_costs_for_selection_interpolate_the_exact_expectation(model):
    sc = model.stage_costs(["a", "b", "c"], 64)
    assert sc.batch == 64 and sc.per_call == pytest.approx(0.01)
    assert sc.full("b") == pytest.approx(float(model.stage("b", 64)))
    reach = np.array([0.0, 0.013, 0.3, 0.77, 1.0])
    exact = model.expected_stage("c", 64, reach)
    assert np.allclose(sc.expected["c"](reach), exact, rtol=1e-3, atol=1e-6)
    one = model.stage_costs(["a"], 1)  # batch 1: exactly proportional to the reach
    assert np.allclose(one.expected["a"](reach), reach * float(model.stage("a", 1)))


def test_missing_member_names_the_profile_and_the_fix(model):
    with pytest.raises(EdgeCommitteeError, match="no timings for member 'zz'.*profile the bundle again"):
        model.stage_costs(["a", "zz"], 1)


def test_histogram_must_match_the_stages(model):
    with pytest.raises(EdgeCommitteeError, match="one count per stage"):
        model.mean(["a", "b"], 1, [1, 2, 3])
