"""Selection objectives (``select/objective.py``): what the mutation run over the module found
untested (docs/mutation_testing.md), each pinned here."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from edge_committee.errors import EdgeCommitteeError
from edge_committee.select.frontier import frontier
from edge_committee.select.objective import (
    ALWAYS_EXIT,
    NEVER_EXIT,
    SelectionResult,
    choose,
    finite_threshold,
)


def test_infinite_thresholds_become_float32_extremes():
    big = float(np.finfo(np.float32).max)
    assert NEVER_EXIT == big and ALWAYS_EXIT == -big
    assert finite_threshold(math.inf) == big and finite_threshold(-math.inf) == -big
    assert finite_threshold(0.25) == 0.25 and type(finite_threshold(np.float32(0.5))) is float


def test_a_result_made_without_a_target_writes_nulls(small_frontier):
    cand, _ = choose(small_frontier, "worst_cost", 3e9)
    d = SelectionResult(cand, small_frontier, "worst_cost", 3e9).to_dict()
    assert d["target_accuracy"] is None and d["confidence_level"] is None and d["interval_level"] == 0.9
    json.dumps(d, allow_nan=False)  # strict JSON, as the manifest needs


def test_cost_objectives_resolve_no_target(small_frontier):
    for objective in ("worst_cost", "mean_cost"):
        assert choose(small_frontier, objective, 3e9)[1] is None


def test_an_ensemble_is_written_with_never_exit_between_its_members(small_frontier):
    cand, _ = choose(small_frontier, "worst_cost", 1e12, kinds=["ensemble"])
    assert cand.kind == "ensemble" and len(cand.members) >= 2
    d = SelectionResult(cand, small_frontier, "worst_cost", 1e12).to_dict()
    assert d["thresholds"] == [NEVER_EXIT] * (len(cand.members) - 1) and d["combination"] == "average"


def _message(call) -> str:
    with pytest.raises(EdgeCommitteeError) as exc:
        call()
    return str(exc.value)


def test_refusals_are_whole_sentences(small_data, small_frontier):
    """Each refusal as the user reads it, anchored at both ends (a substring match let 'XX...XX' pass)."""
    singles = frontier(small_data, max_len=1)
    cheapest = min(s.cost for s in small_frontier.singles)
    cases = [
        (lambda: choose(small_frontier, "latency", 1.0),
         r"^unknown objective 'latency'; expected one of worst_cost, mean_cost, accuracy$"),
        (lambda: choose(small_frontier, "worst_cost", 1.0, kinds=["tree"]),
         r"^candidate kinds must be a non-empty subset of \(.*\), got \['tree'\]$"),
        (lambda: choose(singles, "worst_cost", 1e12, kinds=["cascade"]),
         r"^no candidate of kinds \['cascade'\] \(members: 5, max_len 1\)$"),
        (lambda: choose(small_frontier, "accuracy", 0.9999),
         r"^no candidate reaches the target accuracy 0\.9999 on validation; the best achievable is 0\.\d{4}; "
         r"lower the target$"),
        (lambda: choose(small_frontier, "worst_cost", 1e8),
         r"^the worst-cost budget 1e\+08 MACs is below every candidate; the cheapest possible is "
         + re.escape(f"{cheapest:g}") + r" MACs \(single \S+\); raise the budget$"),
    ]
    for call, pattern in cases:
        text = _message(call)
        assert re.match(pattern, text), (pattern, text)


def test_validation_label_checks_at_their_edges(caplog):
    from edge_committee.select.objective import check_validation_labels

    assert check_validation_labels(None, 3) == [] and check_validation_labels(np.array([], np.int64), 3) == []
    assert _message(lambda: check_validation_labels(np.array([2]), 3)) == (
        "the validation labels hold a single class (class 2, all 1 samples) of 3; every committee would be scored "
        "on that class alone (a constant classifier scores 100 %): use a validation split with samples of every class")
    five = np.array([0] * 10 + [1] * 10 + [2] * 5)  # MIN_PER_CLASS samples are enough
    assert check_validation_labels(five, 3, learned=True, warn=lambda s: None) == []
    rare = np.array([0] * 10 + [1] * 10 + [2] * 2)
    notes = check_validation_labels(rare, 3, warn=lambda s: None)  # not learned: nothing about combiners
    assert notes == ["1 classes have fewer than 5 validation samples (class 2: 2): accuracies and thresholds "
                     "from them are noisy"]
    assert check_validation_labels(rare, 3, learned=True, warn=lambda s: None)[0].endswith(
        "; a learned combiner fitted on them overfits")


@pytest.mark.parametrize("target, outcome", [
    (0.0, "chosen"), (1.0, "unreachable"), (1.5, "range"), (-0.01, "range"), ("abc", "type"), (None, "type")])
def test_accuracy_targets_at_and_beyond_their_bounds(small_frontier, target, outcome):
    """0 and 1 are targets (1 is unreachable here); outside [0, 1] or not a number is a refusal."""
    if outcome == "chosen":
        cand, resolved = choose(small_frontier, "accuracy", target)
        cheapest = min(small_frontier.table()["mean"])
        assert resolved == 0.0 and cand.mean_cost == cheapest
        return
    text = _message(lambda: choose(small_frontier, "accuracy", target))
    if outcome == "unreachable":
        expected = r"^no candidate reaches the target accuracy 1\.0000 on validation"
    elif outcome == "range":
        expected = rf"^the accuracy target must lie in \[0, 1\], got {re.escape(str(float(target)))}$"
    else:
        expected = (r"^the accuracy target must be a number in \[0, 1\] or 'best_single', got "
                    rf"{re.escape(repr(target))}$")
    assert re.match(expected, text), text


@pytest.mark.parametrize("budget, ok", [(0, True), (0.5, True), (-1, False), (math.inf, False), (math.nan, False),
                                        ("abc", False), (None, False)])
def test_cost_budgets_at_and_beyond_their_bounds(small_frontier, budget, ok):
    """0 and 0.5 are budgets (below every candidate, so that refusal); negative, infinite, NaN and text
    are refused as budgets."""
    text = _message(lambda: choose(small_frontier, "mean_cost", budget))
    if ok:
        assert "is below every candidate" in text, text
    else:
        assert text == f"the mean_cost budget must be a number >= 0 MACs, got {budget!r}", text


def test_select_cascade_defaults_and_refusals(small_data):
    from edge_committee.select.objective import select_cascade

    res = select_cascade(small_data, "worst_cost", 1e12)
    assert res.frontier.max_len == 4 and res.frontier.stage_overhead == 0.0
    # a cost budget has no accuracy target to warn about; its only warning is the paired interval's
    # (the committee's lead over the best single member within the budget is not resolved)
    assert res.target_accuracy is None
    assert all("cannot tell them apart" in w and "validation samples" in w for w in res.warnings), res.warnings
    assert _message(lambda: select_cascade(small_data, "fastest", 1.0)) == (
        "unknown objective 'fastest'; expected one of worst_cost, mean_cost, accuracy")
    acc = select_cascade(small_data, "accuracy", 0.5, search="guided")
    assert acc.to_dict()["search"]["cost_limit"] is None  # an accuracy target prunes nothing


def test_a_target_met_by_a_wide_margin_keeps_the_first_choice_under_a_confidence_level(small_frontier):
    """The preferred candidate is checked first: when its interval clears the target it is the answer."""
    plain, _ = choose(small_frontier, "accuracy", 0.3)
    assert plain.val_accuracy > 0.5  # the cheapest candidate clears 0.3 by far: its lower bound does too
    confident, _ = choose(small_frontier, "accuracy", 0.3, confidence_level=0.9)
    assert (confident.kind, confident.members, confident.thresholds) == (plain.kind, plain.members,
                                                                         plain.thresholds)


@pytest.mark.parametrize("level", [0.5, 0.9, 0.99])
def test_best_single_under_a_confidence_level_always_has_an_answer(small_frontier, level):
    """The reference member itself qualifies (its paired interval is [0, 0]): never a refusal, and
    nothing less preferred than the reference is chosen."""
    cand, target = choose(small_frontier, "accuracy", "best_single", confidence_level=level)
    ref = small_frontier.reference_member
    assert target == max(s.accuracy for s in small_frontier.singles)
    assert cand.paired is not None and cand.paired.low >= 0.0
    if cand.kind == "single":
        assert cand.members == (ref,)
    else:
        assert cand.mean_cost <= next(s.cost for s in small_frontier.singles if s.name == ref) + 1e-6


def test_a_target_no_lower_bound_reaches_names_the_best_lower_bound(small_frontier):
    from edge_committee.select.intervals import clopper_pearson

    best = max(small_frontier.table()["accuracy"])
    n = small_frontier.num_val
    text = _message(lambda: choose(small_frontier, "accuracy", float(best), confidence_level=0.9))
    m = re.match(r"^no candidate's validation accuracy has a 0\.9 lower bound >= (\S+) \(the best lower bound is "
                 rf"(\S+), on {n} validation samples\); lower --confidence-level or the target, or use more "
                 r"validation samples$", text)
    assert m, text
    expected = clopper_pearson(int(round(best * n)), n, 0.9)[0]
    assert float(m.group(1)) == pytest.approx(best, abs=1e-4) and float(m.group(2)) == pytest.approx(expected,
                                                                                                     abs=1e-4)


def small_data_singles(data):
    return frontier(data, max_len=1).singles


def test_warnings_say_when_the_choice_rests_on_too_few_samples(small_data):
    from edge_committee.select.objective import select_cascade

    n = small_data.val_labels.size
    res = select_cascade(small_data, "accuracy", "best_single")
    c = res.chosen
    assert c.members != (c.paired.reference,) and c.paired.low < 0  # this data: a cascade, not surely better
    span = (f"{100 * c.paired.difference:+.2f} points, 0.9 interval [{100 * c.paired.low:+.2f}, "
            f"{100 * c.paired.high:+.2f}] on {n} validation samples")
    assert res.warnings == [f"the chosen {c.label} differs from {c.paired.reference} by {span}: it may be less "
                            "accurate on new data; use --confidence-level 0.9 (or more validation samples)"]
    target = float(c.val_accuracy)  # met on validation, but not by the lower end of its interval
    res = select_cascade(small_data, "accuracy", target)
    c = res.chosen
    assert c.val_interval[0] < target
    assert res.warnings == [f"the chosen {c.label} meets the target {100 * target:.2f}% on validation, but its 0.9 "
                            f"interval starts at {100 * c.val_interval[0]:.2f}% ({n} samples); use "
                            "--confidence-level to require the lower end"]
    weakest = min(s.accuracy for s in small_data_singles(small_data))
    single = select_cascade(small_data, "accuracy", weakest, kinds=["single"])  # a single, not the reference
    c = single.chosen
    assert c.kind == "single" and c.members != (c.paired.reference,) and c.val_interval[0] < weakest
    assert len(single.warnings) == 1 and single.warnings[0].startswith(f"the chosen {c.label} meets the target")
    alone = select_cascade(small_data, "accuracy", "best_single", kinds=["single"])
    assert alone.chosen.members == (alone.chosen.paired.reference,) and alone.warnings == []
    sure = select_cascade(small_data, "accuracy", "best_single", confidence_level=0.9)
    assert sure.chosen.paired.low >= 0 and sure.warnings == []
