"""Objectives, budgets, leak-freedom and agreement with the NumPy reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_committee.cascade.reference import ensemble, evaluate_cascade
from edge_committee.errors import EdgeCommitteeError
from edge_committee.select import NEVER_EXIT, choose, frontier, select_cascade
from edge_committee.select.frontier import KINDS


def _all_points(front):
    t = front.table()
    return t["accuracy"], t["mean"], t["worst"]


@pytest.mark.parametrize("budget", [0.39e9, 1.0e9, 1.75e9, 3.0e9, 8.0e9])
def test_worst_case_budget_is_never_exceeded_and_best(small_frontier, budget):
    cand, _ = choose(small_frontier, "worst_cost", budget)
    assert cand.worst_cost <= budget
    acc, mean, worst = _all_points(small_frontier)
    best = acc[worst <= budget].max()
    assert cand.val_accuracy == best
    assert cand.mean_cost == mean[(worst <= budget) & (acc == best)].min()


@pytest.mark.parametrize("budget", [0.5e9, 1.2e9, 2.5e9])
def test_mean_cost_budget(small_frontier, budget):
    cand, _ = choose(small_frontier, "mean_cost", budget)
    acc, mean, _ = _all_points(small_frontier)
    assert cand.mean_cost <= budget
    assert cand.val_accuracy == acc[mean <= budget].max()


def test_accuracy_target_best_single(small_frontier):
    cand, target = choose(small_frontier, "accuracy", "best_single")
    assert target == max(s.accuracy for s in small_frontier.singles)
    acc, mean, _ = _all_points(small_frontier)
    assert cand.val_accuracy >= target
    assert cand.mean_cost == mean[acc >= target].min()
    largest = max(small_frontier.singles, key=lambda s: s.cost)
    assert cand.mean_cost < largest.cost  # a cascade matches the best single for less


def test_budget_too_small_names_cheapest_cost(small_frontier):
    with pytest.raises(EdgeCommitteeError, match=r"cheapest possible is 3\.9e\+08 MACs"):
        choose(small_frontier, "worst_cost", 1e8)
    with pytest.raises(EdgeCommitteeError, match="cheapest possible"):
        choose(small_frontier, "mean_cost", 0.38e9)
    with pytest.raises(EdgeCommitteeError, match="best achievable"):
        choose(small_frontier, "accuracy", 0.9999)
    with pytest.raises(EdgeCommitteeError, match="unknown objective"):
        choose(small_frontier, "latency", 1.0)


def test_kinds_restrict_the_choice(small_frontier):
    cand, _ = choose(small_frontier, "worst_cost", 5e9, kinds=["cascade"])
    assert cand.kind == "cascade"
    cand, _ = choose(small_frontier, "worst_cost", 5e9, kinds=["single"])
    assert cand.kind == "single" and cand.worst_cost <= 5e9


@pytest.mark.parametrize("objective,budget", [("worst_cost", 3e9), ("mean_cost", 1.2e9), ("accuracy", "best_single")])
def test_chosen_figures_match_reference(small_data, objective, budget):
    res = select_cascade(small_data, objective, budget, max_len=3, stage_overhead=1e6)
    c = res.chosen
    d = res.to_dict()
    costs = [small_data.costs[m] for m in c.members]
    for split, logits, labels, acc, mean, hist in (
        ("val", small_data.val_logits, small_data.val_labels, d["val_accuracy"], d["mean_cost"], d["exit_histogram"]),
        ("test", small_data.test_logits, small_data.test_labels, d["test_accuracy"], d["test_mean_cost"],
         d["test_exit_histogram"]),
    ):
        member_logits = [logits[m] for m in c.members]
        if c.kind == "cascade":
            ev = evaluate_cascade(member_logits, labels, d["thresholds"], costs, d["confidence"], 1e6)
            assert (acc, hist) == (ev.accuracy, ev.exit_histogram), split
            assert mean == pytest.approx(ev.mean_cost, rel=1e-12)
            assert d["worst_cost"] == pytest.approx(ev.worst_cost, rel=1e-12)
        elif c.kind == "ensemble":
            assert acc == np.mean(ensemble(member_logits).argmax(-1) == labels)
            assert d["thresholds"] == [NEVER_EXIT] * (len(c.members) - 1)
        else:
            assert acc == np.mean(member_logits[0].argmax(-1) == labels)


def test_thresholds_do_not_depend_on_test_data(small_data):
    before = select_cascade(small_data, "worst_cost", 3e9, max_len=3).to_dict()
    rng = np.random.default_rng(1)
    corrupted = {
        m: rng.permutation(x)[:, ::-1] * np.float32(rng.uniform(0.1, 10)) for m, x in small_data.test_logits.items()
    }
    other = dataclasses.replace(
        small_data, test_logits=corrupted, test_labels=rng.permutation(small_data.test_labels)
    )
    after = select_cascade(other, "worst_cost", 3e9, max_len=3).to_dict()
    for key in ("kind", "members", "thresholds", "val_accuracy", "mean_cost", "worst_cost", "exit_histogram"):
        assert after[key] == before[key], key
    assert after["test_accuracy"] != before["test_accuracy"]
    no_test = dataclasses.replace(small_data, test_logits=None, test_labels=None)
    assert select_cascade(no_test, "worst_cost", 3e9, max_len=3).to_dict()["thresholds"] == before["thresholds"]


def test_member_order_of_input_does_not_matter(small_data):
    names = list(small_data.val_logits)[::-1]
    shuffled = dataclasses.replace(
        small_data,
        val_logits={n: small_data.val_logits[n] for n in names},
        test_logits={n: small_data.test_logits[n] for n in names},
        costs={n: small_data.costs[n] for n in names},
    )
    a = select_cascade(small_data, "mean_cost", 1.5e9, max_len=3).to_dict()
    b = select_cascade(shuffled, "mean_cost", 1.5e9, max_len=3).to_dict()
    for d in (a, b):
        del d["search"]["seconds"]  # wall time differs from run to run
    assert a == b


def test_ensemble_and_single_scores(small_data, small_frontier):
    for s in small_frontier.singles:
        (m,) = s.members
        assert s.accuracy == np.mean(small_data.val_logits[m].argmax(-1) == small_data.val_labels)
        assert s.cost == small_data.costs[m]
    for e in small_frontier.ensembles[::4]:
        probs = ensemble([small_data.val_logits[m] for m in e.members])
        assert e.accuracy == np.mean(probs.argmax(-1) == small_data.val_labels)
        assert e.cost == sum(small_data.costs[m] for m in e.members)


def test_label_free_scores_agreement_with_reference(small_data):
    unlabeled = dataclasses.replace(small_data, val_labels=None)
    res = select_cascade(unlabeled, "worst_cost", 3e9, max_len=3)
    d = res.to_dict()
    assert d["label_free"] and d["reference"] == "ensemble"
    assert "agreement" in d["accuracy_metric"]
    ref_labels = ensemble([small_data.val_logits[m] for m in small_data.names]).argmax(-1)
    c = res.chosen
    if c.kind == "cascade":
        costs = [small_data.costs[m] for m in c.members]
        ev = evaluate_cascade([small_data.val_logits[m] for m in c.members], ref_labels, c.thresholds, costs)
        assert c.val_accuracy == ev.accuracy
    # test accuracy is still against the true labels
    assert d["test_accuracy"] is not None and d["test_accuracy"] < 1.0
    named = frontier(unlabeled, max_len=2, reference="m2")
    m2 = next(s for s in named.singles if s.members == ("m2",))
    assert m2.accuracy == 1.0 and named.reference == "m2"


def test_bad_arguments_raise_user_errors(small_data):
    with pytest.raises(EdgeCommitteeError, match="unknown confidence"):
        frontier(small_data, confidence="entropy")
    with pytest.raises(EdgeCommitteeError, match="unknown cascade order"):
        frontier(small_data, order="random")
    with pytest.raises(EdgeCommitteeError, match="reference"):
        frontier(dataclasses.replace(small_data, val_labels=None), reference="nope")
    with pytest.raises(EdgeCommitteeError, match="budget"):
        select_cascade(small_data, "worst_cost", -1)
    with pytest.raises(EdgeCommitteeError, match="candidate kinds"):
        choose(frontier(small_data, max_len=2), "worst_cost", 1e10, kinds=["pipeline"])
    assert set(KINDS) == {"single", "ensemble", "cascade", "learned_ensemble", "learned_cascade"}


@pytest.mark.parametrize("order", ["cheapest_first", "any"])
def test_members_of_one_group_never_appear_together(small_data, order):
    """One model at two precisions (a group) is never paired with itself; others still are."""
    names = small_data.names
    groups = {names[0]: "m0", names[1]: "m0"}  # names[1] plays names[0] at another precision
    data = dataclasses.replace(small_data, groups=groups)
    front = frontier(data, max_len=3, order=order)
    seen = [c.members for c in front.ensembles] + [f.members for f in front.cascades]
    assert seen and not [m for m in seen if names[0] in m and names[1] in m]
    assert [m for m in seen if names[0] in m and names[2] in m]
    ungrouped = frontier(small_data, max_len=3, order=order)
    assert len(ungrouped.cascades) > len(front.cascades)
    with pytest.raises(EdgeCommitteeError, match="unknown members"):
        dataclasses.replace(small_data, groups={"nope": "x"})
