"""Choosing one committee from the frontier under a budget, and the result's manifest form.

Objectives (validation figures only; ties go to the lower mean cost, then the lower worst-case
cost, then fewer members):

- ``"worst_cost"``: the most accurate candidate whose worst-case cost is <= ``budget``;
- ``"mean_cost"``: the most accurate candidate whose mean cost is <= ``budget``;
- ``"accuracy"``: the cheapest (mean cost) candidate whose validation accuracy is >= ``budget``,
  a number in [0, 1] or ``"best_single"`` (the best single member's validation accuracy).

A budget no candidate meets raises :class:`~edge_committee.errors.EdgeCommitteeError` stating the
cheapest possible cost (or the best achievable accuracy).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np

from edge_committee.errors import EdgeCommitteeError
from edge_committee.select.data import SelectionData
from edge_committee.select.frontier import (
    CASCADE_KINDS,
    KINDS,
    LEARNED_KINDS,
    Candidate,
    Frontier,
    frontier,
    resolve_search,
)
from edge_committee.select.intervals import DEFAULT_LEVEL, check_level, clopper_pearson, paired_interval

OBJECTIVES = ("worst_cost", "mean_cost", "accuracy")

#: Finite stand-ins for the +-inf thresholds in manifests (strict JSON has no Infinity): no
#: confidence reaches float32's largest value, and every finite confidence is above its negative.
NEVER_EXIT = float(np.finfo(np.float32).max)
ALWAYS_EXIT = -NEVER_EXIT


def finite_threshold(t: float) -> float:
    """A threshold with +-inf replaced by +-NEVER_EXIT (valid strict JSON, same behaviour)."""
    return NEVER_EXIT if t == math.inf else ALWAYS_EXIT if t == -math.inf else float(t)


@dataclasses.dataclass
class SelectionResult:
    """The chosen committee, the frontier it was chosen from, and how."""

    chosen: Candidate
    frontier: Frontier
    objective: str
    budget: float | str
    target_accuracy: float | None = None  #: resolved target for the "accuracy" objective
    confidence_level: float | None = None  #: the target had to be met by the interval's lower end
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def interval_level(self) -> float:
        """Level of the intervals in the report: the requested confidence level, else 0.9."""
        return self.confidence_level or DEFAULT_LEVEL

    def to_dict(self) -> dict:
        """JSON-ready description of the chosen committee (for a bundle manifest).

        ``thresholds`` has one float per stage but the last; for an ensemble they are
        :data:`NEVER_EXIT` (run as a cascade it runs every member), and +-inf thresholds of a
        cascade are written as +-:data:`NEVER_EXIT`. Costs are in ``cost_unit``.
        """
        c, f = self.chosen, self.frontier
        if c.kind in CASCADE_KINDS:
            thresholds = [finite_threshold(t) for t in c.thresholds]
        else:
            thresholds = [NEVER_EXIT] * (len(c.members) - 1)
        return {
            "kind": c.kind,
            "members": list(c.members),
            "thresholds": thresholds,
            "confidence": f.confidence,
            "val_accuracy": c.val_accuracy,
            "test_accuracy": c.test_accuracy,
            "mean_cost": c.mean_cost,
            "worst_cost": c.worst_cost,
            "test_mean_cost": c.test_mean_cost,
            "exit_histogram": list(c.val_exit_histogram or ()),
            "test_exit_histogram": list(c.test_exit_histogram) if c.test_exit_histogram else None,
            "cost_unit": f.cost_unit,
            "stage_overhead": f.stage_overhead,
            "cost_model": f.data.stage_costs.to_dict() if f.data.stage_costs is not None else None,
            "objective": self.objective,
            "budget": self.budget,
            "target_accuracy": self.target_accuracy,
            "label_free": f.label_free,
            "reference": f.reference,
            "accuracy_metric": f.accuracy_metric,
            "search_eps_accuracy": c.eps_accuracy,
            "max_len": f.max_len,
            "order": f.order,
            "num_validation": f.num_val,
            "num_test": f.num_test,
            "combination": "learned" if c.kind in LEARNED_KINDS else "average",
            "confidence_level": self.confidence_level,
            "interval_level": self.interval_level,
            "val_accuracy_interval": list(c.val_interval) if c.val_interval else None,
            "paired_reference": c.paired.reference if c.paired else None,
            "paired_difference": c.paired.difference if c.paired else None,
            "paired_interval": [c.paired.low, c.paired.high] if c.paired else None,
            "search": f.search.to_dict(timing=True) if f.search is not None else None,
            "warnings": list(self.warnings),
        }


def _resolve_target(front: Frontier, budget: float | str) -> float:
    if budget == "best_single":
        return front.best_single_accuracy
    try:
        target = float(budget)
    except (TypeError, ValueError):
        raise EdgeCommitteeError(
            f"the accuracy target must be a number in [0, 1] or 'best_single', got {budget!r}"
        ) from None
    if not 0.0 <= target <= 1.0:
        raise EdgeCommitteeError(f"the accuracy target must lie in [0, 1], got {target}")
    return target


def _budget(budget: float | str, objective: str, unit: str) -> float:
    try:
        value = float(budget)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise EdgeCommitteeError(f"the {objective} budget must be a number >= 0 {unit}, got {budget!r}")
    return value


def choose(
    front: Frontier,
    objective: str,
    budget: float | str,
    kinds: Sequence[str] = KINDS,
    confidence_level: float | None = None,
) -> tuple[Candidate, float | None]:
    """The candidate the objective picks (validation figures) and the resolved accuracy target.

    With ``confidence_level`` (accuracy objective only) the target must be met by the lower end of
    the two-sided exact interval at that level: for ``"best_single"`` the interval of the
    accuracy difference against that member, paired on the same samples, must lie at or above 0;
    for a number, the accuracy's Clopper-Pearson interval must lie at or above it.
    """
    if objective not in OBJECTIVES:
        raise EdgeCommitteeError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    bad = sorted(set(kinds) - set(KINDS))
    if bad or not kinds:
        raise EdgeCommitteeError(f"candidate kinds must be a non-empty subset of {KINDS}, got {list(kinds)}")
    t = front.table()
    rows = np.flatnonzero(np.isin(t["kind"], [KINDS.index(k) for k in kinds]))
    if rows.size == 0:
        raise EdgeCommitteeError(
            f"no candidate of kinds {list(kinds)} (members: {len(front.singles)}, max_len {front.max_len})"
        )
    acc, mean, worst, size = (t[k][rows] for k in ("accuracy", "mean", "worst", "size"))
    unit = front.cost_unit
    target = None
    if objective == "accuracy":
        target = _resolve_target(front, budget)
        ok = acc >= target
        if not ok.any():
            raise EdgeCommitteeError(
                f"no candidate reaches the target {front.accuracy_metric} {target:.4f} on validation; "
                f"the best achievable is {acc.max():.4f}; lower the target"
            )
        keys = (size, worst, -acc, mean)  # np.lexsort: last key is primary
        if confidence_level is not None:
            order = np.flatnonzero(ok)[np.lexsort(tuple(k[ok] for k in keys))]
            cand = _confident(front, rows[order], acc[order], budget, target, check_level(confidence_level))
            return cand, target
    else:
        limit = _budget(budget, objective, unit)
        cost = worst if objective == "worst_cost" else mean
        ok = cost <= limit
        if not ok.any():
            i = int(np.argmin(cost))
            kind = KINDS[int(t["kind"][rows[i]])]
            raise EdgeCommitteeError(
                f"the {objective.replace('_', '-')} budget {limit:g} {unit} is below every candidate; "
                f"the cheapest possible is {cost[i]:g} {unit} ({kind} "
                f"{front.candidate(kind, int(t['group'][rows[i]]), int(t['point'][rows[i]])).label}); "
                "raise the budget"
            )
        keys = (size, worst, mean, -acc)
    sel = np.flatnonzero(ok)
    best = sel[np.lexsort(tuple(k[sel] for k in keys))[0]]
    r = rows[best]
    cand = front.candidate(int(t["kind"][r]), int(t["group"][r]), int(t["point"][r]))
    return cand, target


#: fewer validation samples of a class than this: its accuracy and the thresholds are noise (warned)
MIN_PER_CLASS = 5


def check_validation_labels(labels: np.ndarray | None, num_classes: int, learned: bool = False,
                            warn=None) -> list[str]:
    """Refuse validation labels of a single class; warn on missing or rare classes. Returns the warnings.

    With one class, every objective rewards the constant classifier (a learned combiner reaches
    100 % by predicting it), so the result would say nothing about the deployed accuracy.
    """
    if labels is None or len(labels) == 0:
        return []
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise EdgeCommitteeError(
            f"the validation labels hold a single class (class {int(present[0])}, all {len(labels)} samples) of "
            f"{num_classes}; every committee would be scored on that class alone (a constant classifier scores "
            "100 %): use a validation split with samples of every class")
    notes = []
    missing = [int(c) for c in np.flatnonzero(counts == 0)]
    if missing:
        notes.append(f"the validation labels have no sample of {len(missing)} of {num_classes} classes "
                     f"(e.g. class {missing[0]}): the selection cannot score them")
    rare = [int(c) for c in present if counts[c] < MIN_PER_CLASS]
    if rare:
        notes.append(f"{len(rare)} classes have fewer than {MIN_PER_CLASS} validation samples (class {rare[0]}: "
                     f"{int(counts[rare[0]])}): accuracies and thresholds from them are noisy"
                     + ("; a learned combiner fitted on them overfits" if learned else ""))
    say = warn or logging.getLogger("edge_committee").warning
    for note in notes:
        say(note)
    return notes
def _confident(front: Frontier, rows: np.ndarray, acc: np.ndarray, budget, target: float, level: float):
    """First candidate of ``rows`` (table rows meeting the target, preferred first) whose interval's
    lower end meets it, among the rows more accurate than every row before them (the Pareto
    candidates; for a numeric target the lower end grows with the accuracy, so no other row can
    come first). For ``"best_single"`` the reference member itself always qualifies (its paired
    interval is [0, 0]): it ends the scan."""
    t = front.table()
    better = acc > np.concatenate([[-np.inf], np.maximum.accumulate(acc)[:-1]])
    if budget == "best_single":
        ref = front._single_index(front.reference_member)
        is_ref = (t["kind"][rows] == 0) & (t["group"][rows] == ref)
        if is_ref.any():
            first = int(np.argmax(is_ref))
            better[first] = True
            better[first + 1:] = False
    stairs = rows[better]
    n = front.num_val
    best_low = -np.inf
    for start in range(0, stairs.size, 64):
        batch = [front.candidate(int(t["kind"][r]), int(t["group"][r]), int(t["point"][r]))
                 for r in stairs[start:start + 64]]
        for c in front.with_intervals(batch, level):
            if budget == "best_single":
                low = c.paired.low
                ok = low >= 0.0
                best_low = max(best_low, low)
            else:
                low = clopper_pearson(int(round(c.val_accuracy * n)), n, level)[0]
                ok = low >= target
                best_low = max(best_low, low)
            if ok:
                return c
    what = (f"accuracy difference to {front.reference_member}" if budget == "best_single"
            else f"validation {front.accuracy_metric}")
    need = 0.0 if budget == "best_single" else target
    raise EdgeCommitteeError(
        f"no candidate's {what} has a {level:g} lower bound >= {need:.4f} (the best lower bound is "
        f"{best_low:.4f}, on {n} validation samples); lower --confidence-level or the target, or use more "
        "validation samples"
    )


def _warnings(result: SelectionResult) -> list[str]:
    """Say when the validation split is too small for the difference the choice rests on."""
    c, f = result.chosen, result.frontier
    if c.paired is None or (c.kind == "single" and c.members == (c.paired.reference,)):
        return []
    level = result.interval_level
    span = (f"{100 * c.paired.difference:+.2f} points, {level:g} interval "
            f"[{100 * c.paired.low:+.2f}, {100 * c.paired.high:+.2f}] on {f.num_val} validation samples")
    if result.objective == "accuracy" and result.budget == "best_single" and c.paired.low < 0:
        return [f"the chosen {c.label} differs from {c.paired.reference} by {span}: it may be less accurate "
                f"on new data; use --confidence-level {level:g} (or more validation samples)"]
    if result.objective == "accuracy" and result.confidence_level is None and c.val_interval is not None:
        if c.val_interval[0] < (result.target_accuracy or 0.0):
            return [f"the chosen {c.label} meets the target {100 * (result.target_accuracy or 0):.2f}% on "
                    f"validation, but its {level:g} interval starts at {100 * c.val_interval[0]:.2f}% "
                    f"({f.num_val} samples); use --confidence-level to require the lower end"]
    if result.objective in ("worst_cost", "mean_cost") and c.kind != "single":
        return _budget_warning(result, level)
    return []


def _budget_warning(result: SelectionResult, level: float) -> list[str]:
    """A cost budget chose a committee over the most accurate single member within the budget for a
    validation margin: warn when the paired interval of that margin reaches 0 or below (validation
    cannot resolve it). An equal committee chosen for its lower mean cost is not warned about."""
    c, f = result.chosen, result.frontier
    limit = _budget(result.budget, result.objective, f.cost_unit)
    fits = [s for s in f.singles if s.cost <= limit]
    if not fits:
        return []
    best = max(fits, key=lambda s: (s.accuracy, -s.cost))
    single = f.candidate("single", f._single_index(best.members[0]))
    mine, theirs = f.val_correct([c, single])
    p = paired_interval(mine, theirs, level, best.members[0])
    if p.difference <= 0 or p.low > 0:  # not chosen for a margin (a cost tie-break), or a resolved one
        return []
    return [f"the chosen {c.label} is {100 * p.difference:+.2f} points over {p.reference} (the most accurate "
            f"single member within the budget), {level:g} interval [{100 * p.low:+.2f}, {100 * p.high:+.2f}] "
            f"on {f.num_val} validation samples: validation cannot tell them apart, so on new data it may be "
            f"no more accurate than {p.reference} (use more validation samples to resolve it)"]


def select_cascade(
    data: SelectionData,
    objective: str,
    budget: float | str,
    max_len: int = 4,
    order: str = "cheapest_first",
    confidence: str = "max_prob",
    stage_overhead: float = 0.0,
    reference: str | None = None,
    kinds: Sequence[str] = KINDS,
    grid: dict[int, int | None] | None = None,
    combiner=None,
    search: str = "auto",
    delta: float | None = None,
    confidence_level: float | None = None,
) -> SelectionResult:
    """Pick the committee (cascade, ensemble or single member) that meets a budget.

    Args:
        data: member outputs and costs (MACs, or ms from a latency profile).
        objective: ``"worst_cost"``, ``"mean_cost"`` or ``"accuracy"`` (see module docstring).
        budget: cost budget in ``data.cost_unit``, or for ``"accuracy"`` the target accuracy in
            [0, 1] or ``"best_single"``.
        max_len: most members in a cascade or ensemble (default 4).
        order: ``"cheapest_first"`` (default) or ``"any"`` member order in cascades.
        confidence: ``"max_prob"`` (default), ``"margin"`` or ``"neg_entropy"``.
        stage_overhead: gate cost per executed cascade stage, in ``data.cost_unit`` (default 0).
        reference: label-free reference when ``data.val_labels`` is None: ``"ensemble"``
            (default, all members) or a member name.
        kinds: which candidate kinds may be chosen (default all: single, ensemble, cascade).
        grid: threshold-search resolution overrides (see :data:`.search.DEFAULT_GRID`).
        combiner: ``None``/``"average"``, ``"learned"`` or a :class:`.learned.CombinerConfig`: with a
            learned combiner, learned ensembles and cascades join the frontier (see :mod:`.learned`).
        search: ``"auto"`` (default), ``"exhaustive"`` or ``"guided"`` (see :func:`.frontier.frontier`).
            When the search is guided, a cost budget also prunes the search (exactly): sequences
            that cannot meet it are never scored.
        delta: the guided search's window (accuracy fraction; default 0.002).
        confidence_level: with the ``"accuracy"`` objective, meet the target with the lower end of
            the exact interval at this two-sided level (see :func:`choose`); also the level of the
            intervals reported (default 0.9).

    Selection reads validation figures only; test figures of the chosen one are then added.
    """
    if objective not in OBJECTIVES:
        raise EdgeCommitteeError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    check_validation_labels(data.val_labels, data.num_classes, learned=combiner not in (None, "average"))
    if confidence_level is not None:
        confidence_level = check_level(confidence_level)
    limit = None
    if objective != "accuracy":
        value = _budget(budget, objective, data.cost_unit)
        if resolve_search(data, max_len, order, search) == "guided":
            limit = {"worst" if objective == "worst_cost" else "first": value}
    front = frontier(data, max_len, order, confidence, stage_overhead, reference, grid, combiner,
                     search=search, delta=delta, cost_limit=limit)
    return select_from(front, objective, budget, kinds, confidence_level)


def select_from(
    front: Frontier,
    objective: str,
    budget: float | str,
    kinds: Sequence[str] = KINDS,
    confidence_level: float | None = None,
) -> SelectionResult:
    """:func:`select_cascade`'s choice on a frontier already built: :func:`choose`, the chosen one's
    test figures and intervals, and the small-validation warnings. One frontier serves several
    objectives (a frontier built with a ``cost_limit`` holds only what meets that limit)."""
    if confidence_level is not None:
        confidence_level = check_level(confidence_level)
    chosen, target = choose(front, objective, budget, kinds, confidence_level)
    (chosen,) = front.with_intervals(front.evaluate([chosen]), confidence_level or DEFAULT_LEVEL)
    result = SelectionResult(chosen, front, objective, budget, target, confidence_level)
    result.warnings = _warnings(result)
    return result
