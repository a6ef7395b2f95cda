"""Selection with batch-aware latency costs (StageCosts from a profile)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.errors import EdgeCommitteeError
from edge_committee.profile import LatencyModel, check_profile
from edge_committee.select import choose, frontier, select_cascade
from edge_committee.select.data import StageCosts
from edge_committee.select.synthetic import synthetic_data

from .conftest import synthetic_profile

PROFILE = {  # ms at batch 1, 8, 64: fixed + per-sample parts, as on a CPU
    "m0": {1: 0.10, 8: 0.30, 64: 2.0},
    "m1": {1: 0.30, 8: 1.00, 64: 7.0},
    "m2": {1: 0.60, 8: 2.50, 64: 17.0},
    "m3": {1: 1.20, 8: 5.00, 64: 36.0},
}


@pytest.fixture(scope="module")
def data():
    return synthetic_data(num_members=4, num_val=800, num_test=600, seed=5)


@pytest.fixture(scope="module")
def model():
    return LatencyModel.from_profile(check_profile(synthetic_profile(PROFILE), "test"), "median_ms")


def test_proportional_stage_costs_reproduce_the_scalar_search(data):
    """A latency model at batch 1 is proportional to the reach: the same frontier as scalar costs."""
    costs = {n: c / 1e6 for n, c in data.costs.items()}
    scalar = frontier(data.with_costs(costs, "ms"), max_len=3)
    sc = StageCosts({n: (lambda r, c=c: c * np.asarray(r)) for n, c in costs.items()})
    staged = frontier(data.with_stage_costs(sc), max_len=3)
    for a, b in zip(scalar.cascades, staged.cascades):
        assert a.members == b.members and a.worst_cost == pytest.approx(b.worst_cost)
        assert np.array_equal(a.accuracy, b.accuracy) and np.allclose(a.mean_cost, b.mean_cost, rtol=1e-12)


@pytest.mark.parametrize("batch", [1, 64])
def test_search_costs_agree_with_the_cost_model(data, model, batch):
    """Every cascade's mean cost from the search equals the cost model's mean latency at its
    validation exit histogram, and its worst case the model's worst case (per-call cost included)."""
    costed = data.with_stage_costs(model.stage_costs(list(PROFILE), batch))
    front = frontier(costed, max_len=3)
    cands = front.evaluate(front.pareto(["cascade"]))
    assert len(cands) > 5
    for c in cands:
        assert c.mean_cost == pytest.approx(model.mean(c.members, batch, c.val_exit_histogram), rel=2e-3)
        assert c.worst_cost == pytest.approx(model.worst(c.members, batch), rel=1e-9)
        if c.test_exit_histogram:
            assert c.test_mean_cost == pytest.approx(model.mean(c.members, batch, c.test_exit_histogram), rel=2e-3)
    single = front.candidate("single", 0)
    assert single.mean_cost == pytest.approx(model.worst(single.members, batch))


def test_worst_case_budget_is_met_and_an_impossible_one_names_the_cheapest(data, model):
    costed = data.with_stage_costs(model.stage_costs(list(PROFILE), 64))
    res = select_cascade(costed, "worst_cost", 20.0, max_len=3)
    assert res.chosen.worst_cost <= 20.0
    assert res.to_dict()["cost_model"]["batch"] == 64
    cheapest = model.worst(["m0"], 64)
    front = frontier(costed, max_len=3)
    with pytest.raises(EdgeCommitteeError, match=f"cheapest possible is {cheapest:g} ms \\(single m0\\)"):
        choose(front, "worst_cost", cheapest * 0.9)


def test_stage_costs_must_cover_every_member(data):
    with pytest.raises(EdgeCommitteeError, match="no entry for members"):
        data.with_stage_costs(StageCosts({"m0": lambda r: r}))
