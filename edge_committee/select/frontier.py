"""Candidates and their accuracy/cost frontier: single members, ensembles and cascades.

:func:`frontier` scores every candidate on the validation split only:

- every single member (cost = its cost);
- every ensemble, the mean of the softmax probabilities of a subset of 2..``max_len`` members
  (cost = sum of the members' costs; worst = mean);
- every cascade, an ordered sequence of 2..``max_len`` distinct members (cheapest first, or every
  permutation with ``order="any"``) with one threshold per stage but the last; its Pareto set over
  thresholds comes from :mod:`.search`. Mean cost = expectation over the validation split of the
  members run plus ``stage_overhead`` per executed stage; worst = every stage run.

With a learned combiner (``combiner=``, :mod:`.learned`) the frontier also holds the learned twins
of the ensembles and cascades (kinds ``learned_ensemble`` and ``learned_cascade``): the same member
sets and sequences and the same threshold search, each stage deciding on the cross-fitted learned
combination of its prefix instead of the mean, so plain and learned candidates compete on one
frontier.

Label-free mode (no validation labels): "accuracy" is the agreement with a reference's
predictions on the validation split: the ensemble of all members (default) or a named member.
Test accuracy, when test labels exist, is always against the true test labels, and only ever
computed for reporting (:meth:`Frontier.evaluate`), never used to choose.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import numpy as np

from edge_committee.cascade import reference as ref
from edge_committee.errors import EdgeCommitteeError
from edge_committee.select.compact import CompactOutputs
from edge_committee.select.data import SelectionData
from edge_committee.select.guided import DEFAULT_DELTA, GuidedWalk, SearchInfo, count_sequences
from edge_committee.select.intervals import PairedInterval, accuracy_interval, check_level, paired_interval
from edge_committee.select.learned import CombinerConfig, CombinerFits, LearnedOutputs
from edge_committee.select.search import (
    PrefixWalk,
    SequenceFront,
    SubsetScore,
    pareto_indices,
)
from edge_committee.select.stats import (
    SplitOutputs,
    StageStats,
    exit_stages,
    score_exits,
)

KINDS = ("single", "ensemble", "cascade", "learned_ensemble", "learned_cascade")
#: kinds that run members one after another with thresholds
CASCADE_KINDS = ("cascade", "learned_cascade")
#: kinds whose stages decide on a learned combination
LEARNED_KINDS = ("learned_ensemble", "learned_cascade")
ORDERS = ("cheapest_first", "any")
SEARCHES = ("auto", "exhaustive", "guided")
#: member softmaxes above this many bytes (all members, float32) are held compactly (:mod:`.compact`)
COMPACT_ABOVE = 1 << 30
#: candidate classes per sample of the compact form
COMPACT_K = 64
#: ``search="auto"`` scores every sequence (exhaustive) up to this many, else runs the guided walk
AUTO_EXHAUSTIVE_MAX = 1_000
ENSEMBLE_REFERENCE = "ensemble"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One committee with its figures. Costs in the frontier's cost unit.

    ``thresholds`` has K-1 entries for a cascade (-inf = always exit, +inf = never exit) and is
    empty otherwise. Validation figures are those selection used; test figures are filled in by
    :meth:`Frontier.evaluate` (``None`` without test labels).
    """

    kind: str
    members: tuple[str, ...]
    thresholds: tuple[float, ...]
    val_accuracy: float
    mean_cost: float
    worst_cost: float
    eps_accuracy: float = 0.0
    val_exit_histogram: tuple[int, ...] | None = None
    test_accuracy: float | None = None
    test_mean_cost: float | None = None
    test_exit_histogram: tuple[int, ...] | None = None
    #: exact interval of the validation accuracy, (low, high), at ``paired.level`` (:meth:`Frontier.with_intervals`)
    val_interval: tuple[float, float] | None = None
    #: validation accuracy minus the reference member's, paired on the same samples, with its interval
    paired: PairedInterval | None = None

    @property
    def label(self) -> str:
        """Short human name: ``b0>b2`` (cascade), ``b0+b2`` (ensemble), ``b0>b2 (learned)``."""
        name = ("+" if self.kind in ("ensemble", "learned_ensemble") else ">").join(self.members)
        return name + " (learned)" if self.kind in LEARNED_KINDS else name


@dataclasses.dataclass
class Frontier:
    """Every candidate scored on the validation split, and how they were scored."""

    singles: list[SubsetScore]
    ensembles: list[SubsetScore]
    cascades: list[SequenceFront]
    confidence: str
    stage_overhead: float
    cost_unit: str
    order: str
    max_len: int
    label_free: bool
    reference: str | None  #: label-free reference ("ensemble" or a member name), else None
    num_val: int
    num_test: int
    data: SelectionData = dataclasses.field(repr=False)
    _table: dict | None = dataclasses.field(default=None, repr=False)
    _val: SplitOutputs | None = dataclasses.field(default=None, repr=False)
    _test: SplitOutputs | None = dataclasses.field(default=None, repr=False)
    learned_ensembles: list[SubsetScore] = dataclasses.field(default_factory=list)
    learned_cascades: list[SequenceFront] = dataclasses.field(default_factory=list)
    combiner: CombinerConfig | None = None
    fits: CombinerFits | None = dataclasses.field(default=None, repr=False)
    _lval: LearnedOutputs | None = dataclasses.field(default=None, repr=False)
    _ltest: LearnedOutputs | None = dataclasses.field(default=None, repr=False)
    search: SearchInfo | None = None  #: what the search did (mode, sequences scored, time, bound)

    @property
    def accuracy_metric(self) -> str:
        """What "validation accuracy" means here."""
        if not self.label_free:
            return "accuracy"
        who = "the ensemble of all members" if self.reference == ENSEMBLE_REFERENCE else self.reference
        return f"agreement with {who}"

    @property
    def best_single_accuracy(self) -> float:
        return max(s.accuracy for s in self.singles)

    @property
    def eps_accuracy(self) -> float:
        """Largest accuracy bound of the threshold search over all cascades (0 = exact)."""
        return max((f.eps_accuracy for f in self.cascades + self.learned_cascades), default=0.0)

    def table(self) -> dict[str, np.ndarray]:
        """Every candidate point as flat arrays: kind, group, point, accuracy, mean, worst, size.

        Cascade points that stop every validation sample before the last stage (an always-exit
        threshold) are left out: a shorter candidate has the same accuracy and mean cost.
        """
        if self._table is None:
            rows: list[tuple[np.ndarray, ...]] = []
            for code, group in ((0, self.singles), (1, self.ensembles), (3, self.learned_ensembles)):
                for g, s in enumerate(group):
                    rows.append(_rows(code, g, [0], [s.accuracy], [s.cost], s.cost, len(s.members)))
            for code, fronts in ((2, self.cascades), (4, self.learned_cascades)):
                for g, f in enumerate(fronts):
                    keep = np.flatnonzero(~f.redundant)  # the rest equal shorter candidates
                    rows.append(
                        _rows(code, g, keep, f.accuracy[keep], f.mean_cost[keep], f.worst_cost, len(f.members))
                    )
            cols = [np.concatenate(c) for c in zip(*rows)]
            self._table = dict(zip(("kind", "group", "point", "accuracy", "mean", "worst", "size"), cols))
        return self._table

    def candidate(self, kind: int | str, group: int, point: int = 0) -> Candidate:
        """The candidate at a row of :meth:`table` (validation figures only)."""
        code = KINDS.index(kind) if isinstance(kind, str) else int(kind)
        if KINDS[code] not in CASCADE_KINDS:
            s = {0: self.singles, 1: self.ensembles, 3: self.learned_ensembles}[code][group]
            return Candidate(KINDS[code], s.members, (), s.accuracy, s.cost, s.cost)
        f = (self.cascades if code == 2 else self.learned_cascades)[group]
        return Candidate(
            KINDS[code],
            f.members,
            tuple(float(t) for t in f.thresholds[point]),
            float(f.accuracy[point]),
            float(f.mean_cost[point]),
            f.worst_cost,
            f.eps_accuracy,
        )

    def pareto(self, kinds: Sequence[str] = KINDS) -> list[Candidate]:
        """The Pareto set (validation accuracy vs mean cost) of the given kinds, cheapest first."""
        t = self.table()
        rows = np.flatnonzero(np.isin(t["kind"], [KINDS.index(k) for k in kinds]))
        front = rows[pareto_indices(t["mean"][rows], t["accuracy"][rows])]
        return [self.candidate(int(t["kind"][i]), int(t["group"][i]), int(t["point"][i])) for i in front]

    def evaluate(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates with validation exit histograms and test figures filled in."""
        out: list[Candidate | None] = [None] * len(candidates)
        groups: dict[tuple[tuple[str, ...], bool], list[int]] = {}
        for i, c in enumerate(candidates):
            groups.setdefault((c.members, c.kind in LEARNED_KINDS), []).append(i)
        for (members, is_learned), idx in groups.items():
            val, test = self._val_split(is_learned), self._test_split(is_learned)
            group = [candidates[i] for i in idx]
            test_stats = test.sequence(members) if test is not None else None
            for i, c in zip(idx, self._evaluate_group(group, val.sequence(members), test_stats)):
                out[i] = c
        return out  # type: ignore[return-value]

    @property
    def reference_member(self) -> str:
        """The member paired intervals compare against: the most accurate single on validation
        (ties: the cheapest)."""
        best = max(self.singles, key=lambda s: (s.accuracy, -s.cost))
        return best.members[0]

    def val_correct(self, candidates: Sequence[Candidate]) -> list[np.ndarray]:
        """(N_val,) bool: which validation samples each candidate gets right (its exits applied)."""
        out: list[np.ndarray | None] = [None] * len(candidates)
        groups: dict[tuple[tuple[str, ...], bool], list[int]] = {}
        for i, c in enumerate(candidates):
            groups.setdefault((c.members, c.kind in LEARNED_KINDS), []).append(i)
        for (members, is_learned), idx in groups.items():
            stats = self._val_split(is_learned).sequence(members)
            thr = np.array([_stage_thresholds(candidates[i]) for i in idx], np.float64).reshape(len(idx), -1)
            stage = exit_stages(stats, thr) if len(members) > 1 else np.zeros((len(idx), self.num_val), np.int64)
            correct = np.stack([s.correct for s in stats])
            for row, i in enumerate(idx):
                out[i] = correct[stage[row], np.arange(self.num_val)]
        return out  # type: ignore[return-value]

    def with_intervals(self, candidates: Sequence[Candidate], level: float) -> list[Candidate]:
        """The candidates with exact validation-accuracy intervals and paired differences against
        :attr:`reference_member` at the two-sided ``level`` (see :mod:`.intervals`)."""
        level = check_level(level)
        ref = self.reference_member
        ref_correct = self.val_correct([self.candidate("single", self._single_index(ref))])[0]
        out = []
        for c, correct in zip(candidates, self.val_correct(candidates)):
            pair = paired_interval(correct, ref_correct, level, ref)
            out.append(dataclasses.replace(c, val_interval=accuracy_interval(correct, level), paired=pair))
        return out

    def _single_index(self, name: str) -> int:
        return next(i for i, s in enumerate(self.singles) if s.members == (name,))

    def _evaluate_group(
        self,
        group: list[Candidate],
        val_stats: list[StageStats],
        test_stats: list[StageStats] | None,
    ) -> list[Candidate]:
        k = len(val_stats)
        per_stage = np.cumsum(np.asarray([self.data.costs[m] for m in group[0].members]) + self.stage_overhead)
        thr = np.array([_stage_thresholds(c) for c in group], np.float64).reshape(len(group), k - 1)
        val_exit = exit_stages(val_stats, thr)
        test_exit = exit_stages(test_stats, thr) if test_stats is not None else None
        test_acc = (
            score_exits(test_stats, test_exit)
            if test_stats is not None and self.data.test_labels is not None
            else None
        )
        result = []
        for i, c in enumerate(group):
            fields: dict = {"val_exit_histogram": _hist(val_exit[i], k)}
            if test_exit is not None:
                fields["test_exit_histogram"] = _hist(test_exit[i], k)
                cascade = c.kind in CASCADE_KINDS
                if not cascade:
                    fields["test_mean_cost"] = c.mean_cost
                elif self.data.stage_costs is None:
                    fields["test_mean_cost"] = float(per_stage[test_exit[i]].mean())
                else:
                    fields["test_mean_cost"] = self.expected_cost(c.members, test_exit[i])
                if test_acc is not None:
                    fields["test_accuracy"] = float(test_acc[i])
            result.append(dataclasses.replace(c, **fields))
        return result

    def expected_cost(self, members: Sequence[str], exit_stage: np.ndarray) -> float:
        """Mean cost of a cascade whose samples exit at ``exit_stage`` (N,), batch-aware when the
        data has :attr:`~.data.SelectionData.stage_costs`: stage k's cost at the fraction of
        samples that reach it, plus the per-call cost."""
        exit_stage = np.asarray(exit_stage)
        total = self.data.per_call_cost
        for k, name in enumerate(members):
            reach = np.array([float(np.mean(exit_stage >= k))]) if exit_stage.size else np.zeros(1)
            f = self.data.stage_cost_fn(name, self.stage_overhead)
            if f is None:
                total += float(reach[0]) * (self.data.costs[name] + self.stage_overhead)
            else:
                total += float(np.asarray(f(reach))[0])
        return total

    def _val_split(self, is_learned: bool = False) -> SplitOutputs | LearnedOutputs:
        if is_learned:
            if self._lval is None:
                target = _target(self.data, self.reference, self.confidence)
                self._lval = LearnedOutputs(self.data.val_logits, target, self.confidence, self.fits, True)
            return self._lval
        if self._val is None:
            target = _target(self.data, self.reference, self.confidence)
            self._val = SplitOutputs(self.data.val_logits, target, self.confidence)
        return self._val

    def _test_split(self, is_learned: bool = False) -> SplitOutputs | LearnedOutputs | None:
        if self.data.test_logits is None:
            return None
        if is_learned:
            if self._ltest is None:
                self._ltest = LearnedOutputs(self.data.test_logits, self.data.test_labels, self.confidence,
                                             self.fits, False)
            return self._ltest
        if self._test is None:
            self._test = SplitOutputs(self.data.test_logits, self.data.test_labels, self.confidence)
        return self._test


def _rows(code, group, points, acc, mean, worst, size) -> tuple[np.ndarray, ...]:
    n = len(points)
    return (
        np.full(n, code, np.int64),
        np.full(n, group, np.int64),
        np.asarray(points, np.int64),
        np.asarray(acc, np.float64),
        np.asarray(mean, np.float64),
        np.full(n, worst, np.float64),
        np.full(n, size, np.int64),
    )


def _stage_thresholds(c: Candidate) -> list[float]:
    """Thresholds that make the cascade machinery evaluate any kind of candidate."""
    if c.kind in CASCADE_KINDS:
        return list(c.thresholds)
    return [np.inf] * (len(c.members) - 1)  # an ensemble runs every member


def _hist(stage: np.ndarray, k: int) -> tuple[int, ...]:
    return tuple(int(x) for x in np.bincount(stage, minlength=k))


def _target(data: SelectionData, reference: str | None, kind: str) -> np.ndarray:
    """Labels that count as correct on the validation split."""
    if reference is None:
        assert data.val_labels is not None
        return data.val_labels
    names = data.names if reference == ENSEMBLE_REFERENCE else [reference]
    split = SplitOutputs({n: data.val_logits[n] for n in names}, None, kind)
    return split.sequence(names)[-1].label


def val_outputs(data: SelectionData, target: np.ndarray | None, confidence: str, max_len: int
                ) -> SplitOutputs | CompactOutputs:
    """The validation outputs the search reads: full softmaxes, or, when every member's float32
    softmax together would exceed :data:`COMPACT_ABOVE` bytes and the confidence is max_prob,
    :class:`.compact.CompactOutputs` (k classes per sample, bit-identical statistics)."""
    n, c = data.num_val, next(iter(data.val_logits.values())).shape[1]
    if confidence == "max_prob" and c > COMPACT_K and 4 * n * c * len(data.names) > COMPACT_ABOVE:
        return CompactOutputs(data.val_logits, target, confidence, max_len=max_len, k=COMPACT_K)
    return SplitOutputs(data.val_logits, target, confidence)


def resolve_search(data: SelectionData, max_len: int, order: str, search: str) -> str:
    """``"exhaustive"`` or ``"guided"``: what ``search`` (one of :data:`SEARCHES`) means for this data."""
    if search not in SEARCHES:
        raise EdgeCommitteeError(f"unknown search {search!r}; expected one of {', '.join(SEARCHES)}")
    if search != "auto":
        return search
    total = sum(count_sequences([data.group_of(n) for n in data.names], max_len, order).values())
    return "exhaustive" if total <= AUTO_EXHAUSTIVE_MAX else "guided"


def _check_args(data: SelectionData, max_len: int, order: str, overhead: float, reference: str | None) -> None:
    if order not in ORDERS:
        raise EdgeCommitteeError(f"unknown cascade order {order!r}; expected one of {', '.join(ORDERS)}")
    if not 1 <= max_len:
        raise EdgeCommitteeError(f"max_len must be >= 1, got {max_len}")
    if not (np.isfinite(overhead) and overhead >= 0):
        raise EdgeCommitteeError(f"stage_overhead must be a number >= 0, got {overhead}")
    if reference not in (None, ENSEMBLE_REFERENCE) and reference not in data.val_logits:
        raise EdgeCommitteeError(
            f"unknown label-free reference {reference!r}; expected {ENSEMBLE_REFERENCE!r} or one of "
            f"{data.names}"
        )
    if data.num_val == 0:
        raise EdgeCommitteeError("the validation split is empty; selection needs validation outputs")


def frontier(
    data: SelectionData,
    max_len: int = 4,
    order: str = "cheapest_first",
    confidence: str = "max_prob",
    stage_overhead: float = 0.0,
    reference: str | None = None,
    grid: dict[int, int | None] | None = None,
    combiner: CombinerConfig | str | dict | None = None,
    search: str = "auto",
    delta: float | None = None,
    cost_limit: dict[str, float] | None = None,
) -> Frontier:
    """Score every single member, ensemble and cascade on the validation split.

    Args:
        data: member outputs and costs.
        max_len: most members in an ensemble or cascade (default 4).
        order: ``"cheapest_first"`` (cascades run members by increasing cost) or ``"any"``
            (every permutation; about ``max_len!`` times slower).
        confidence: ``"max_prob"``, ``"margin"`` or ``"neg_entropy"``.
        stage_overhead: cost of the gate per executed cascade stage, in the data's cost unit.
        reference: label-free reference, used only when ``data.val_labels`` is None:
            ``"ensemble"`` (default: all members) or a member name.
        grid: per-length candidate resolution overrides (see :data:`.search.DEFAULT_GRID`).
        combiner: ``None``/``"average"`` (plain candidates only), ``"learned"`` or a
            :class:`.learned.CombinerConfig`: add learned ensembles and cascades (needs labels).
        search: ``"exhaustive"`` (score every sequence), ``"guided"`` (grow only prefixes whose
            front comes within ``delta`` of the incumbent front, see :mod:`.guided`) or
            ``"auto"`` (default: exhaustive up to :data:`AUTO_EXHAUSTIVE_MAX` sequences, else guided).
        delta: the guided window, an accuracy fraction >= 0 (default :data:`.guided.DEFAULT_DELTA`).
        cost_limit: exact budget pruning, ``{"worst": W}`` (skip sequences whose members' summed cost
            exceeds W) and/or ``{"first": B}`` (skip sequences whose first member alone costs more
            than a mean-cost budget B). The frontier then holds only what can meet the budget.
    """
    try:
        ref.check_confidence_name(confidence)
    except ValueError as exc:
        raise EdgeCommitteeError(str(exc)) from None
    _check_args(data, max_len, order, stage_overhead, reference)
    mode = resolve_search(data, max_len, order, search)
    delta = DEFAULT_DELTA if delta is None else float(delta)
    if not (math.isfinite(delta) and delta >= 0):
        raise EdgeCommitteeError(f"the search window delta must be a number >= 0 (an accuracy fraction), got {delta}")
    limits = {"worst_limit": math.inf, "first_limit": math.inf}
    for key, value in (cost_limit or {}).items():
        if key not in ("worst", "first"):
            raise EdgeCommitteeError(f"unknown cost_limit key {key!r}; expected 'worst' or 'first'")
        limits[f"{key}_limit"] = float(value)
    walk_cls, extra = (GuidedWalk, {"delta": delta}) if mode == "guided" else (PrefixWalk, {})
    started = time.perf_counter()
    used_ref = (reference or ENSEMBLE_REFERENCE) if data.label_free else None
    target = _target(data, used_ref, confidence)
    split = val_outputs(data, target, confidence, max_len)
    groups = [data.group_of(n) for n in data.names]
    fns = None
    if data.stage_costs is not None:
        fns = {n: data.stage_cost_fn(n, float(stage_overhead)) for n in data.names}
    walk = walk_cls(split, data.names, data.costs, max_len, order, stage_overhead, grid, groups,
                    stage_fns=fns, per_call=data.per_call_cost, **limits, **extra)
    singles, ensembles, cascades = walk.run()
    config = CombinerConfig.from_value(combiner)
    fits, learned_e, learned_c = None, [], []
    if config is not None:
        fits = CombinerFits(data.val_logits, data.val_labels, config)
        lsplit = LearnedOutputs(data.val_logits, target, confidence, fits, out_of_fold=True)
        lwalk = walk_cls(lsplit, data.names, data.costs, min(max_len, config.max_members or max_len), order,
                         stage_overhead, grid, groups, stage_fns=fns, per_call=data.per_call_cost, **limits,
                         **extra)
        _, learned_e, learned_c = lwalk.run()
    total = count_sequences(groups, max_len, order)
    scored: dict[int, int] = {}
    for f in cascades:
        scored[len(f.members)] = scored.get(len(f.members), 0) + 1
    info = SearchInfo(
        mode=mode,
        sequences_total=sum(total.values()),
        sequences_scored=len(cascades),
        seconds=time.perf_counter() - started,
        delta=delta if mode == "guided" else None,
        scored_by_length=scored,
        total_by_length=total,
        cost_limit={k: v for k, v in (cost_limit or {}).items()} or None,
        outputs=({"form": "compact", "k": split.k, "fallback_samples": split.fallback}
                 if isinstance(split, CompactOutputs) else {"form": "full"}),
    )
    return Frontier(
        search=info,
        _val=split,
        singles=singles,
        ensembles=ensembles,
        cascades=cascades,
        confidence=confidence,
        stage_overhead=float(stage_overhead),
        cost_unit=data.cost_unit,
        order=order,
        max_len=max_len,
        label_free=data.label_free,
        reference=used_ref,
        num_val=data.num_val,
        num_test=data.num_test,
        data=data,
        learned_ensembles=learned_e,
        learned_cascades=learned_c,
        combiner=config,
        fits=fits,
        _lval=lsplit if config is not None else None,
    )
