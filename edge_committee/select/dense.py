"""Selection for segmentation committees: mIoU vs MACs per frame, on the existing frontier machinery.

Accuracy is the mIoU of ONE confusion matrix accumulated over every pixel of the split (not a
mean of per-frame mIoUs); cost is MACs per frame: the first member's MACs on the whole frame, plus,
for each later stage, the tiles that reach it (mean per frame) times the member's MACs on one tile
window. Candidates are every single member (on whole frames) and every member chain (cascade)
with its Pareto set over thresholds; :func:`~edge_committee.select.objective.choose` picks one for
a budget or a target mIoU exactly as for classifiers, and the report (PNG, Markdown, JSON) is the
classification report with mIoU on the y axis.

Threshold search: for a 2-member chain every distinct tile confidence is a candidate threshold
(exact, from cumulative sums of per-tile confusion matrices); longer chains use a quantile grid of
``grid`` values per stage (no exactness bound: ``eps_accuracy`` is then 1.0, i.e. none).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Sequence

import numpy as np

from edge_committee.cascade.tiles import miou_from_confusion
from edge_committee.errors import EdgeCommitteeError
from edge_committee.evaluate.dense import DenseSplitStats
from edge_committee.select.frontier import Candidate, Frontier
from edge_committee.select.objective import SelectionResult, choose
from edge_committee.select.search import SequenceFront, SubsetScore, pareto_indices

#: candidate kinds of a segmentation committee (ensembles are not built for dense outputs yet)
DENSE_KINDS = ("single", "cascade")


def miou_batch(cms: np.ndarray) -> np.ndarray:
    """mIoU of each of P confusion matrices (P, C, C + 1) -> (P,)."""
    cms = np.asarray(cms, np.float64)
    c = cms.shape[1]
    inter = np.diagonal(cms[:, :, :c], axis1=1, axis2=2)
    union = cms.sum(axis=2) + cms[:, :, :c].sum(axis=1) - inter
    present = union > 0
    ratio = np.where(present, inter / np.where(present, union, 1), 0.0)
    return ratio.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


@dataclasses.dataclass(frozen=True)
class DenseCosts:
    """MACs of each member on one whole frame and on one tile window."""

    frame: dict[str, float]
    window: dict[str, float]

    def chain(self, members: Sequence[str], reach: Sequence[float]) -> float:
        """MACs per frame of a chain whose stage j (>= 1) runs on ``reach[j]`` tiles per frame."""
        return self.frame[members[0]] + sum(self.window[m] * r for m, r in zip(members[1:], reach[1:]))


class _Data:
    """What the report and :meth:`Frontier.evaluate`'s callers read from ``Frontier.data``."""

    stage_costs = None
    per_call_cost = 0.0
    val_labels = None  #: per-pixel labels live in the confusion matrices (no per-sample class check)
    num_classes = 0

    def __init__(self, costs: dict[str, float], has_test: bool) -> None:
        self.costs = costs
        self.test_labels = True if has_test else None
        self.cost_unit = "MACs"

    def group_of(self, name: str) -> str:
        """A dense committee has no precision groups: every member is its own group."""
        return name


def exit_stages(stats: DenseSplitStats, members: Sequence[str], thresholds: np.ndarray) -> np.ndarray:
    """(P, tiles) exit stage of every tile for each of P threshold rows (P, K-1); rule ``>=``."""
    thresholds = np.atleast_2d(np.asarray(thresholds, np.float64))
    k = len(members)
    tiles = len(stats.prefixes[(members[0],)].conf)
    out = np.full((len(thresholds), tiles), k - 1, np.int32)
    left = np.ones((len(thresholds), tiles), bool)
    for j in range(k - 1):
        p = stats.prefixes[tuple(members[:j + 1])]
        exits = left & p.ok[None] & (p.conf[None].astype(np.float64) >= thresholds[:, j:j + 1])
        out[exits] = j
        left &= ~exits
    return out


def score(stats: DenseSplitStats, members: Sequence[str], exit_stage: np.ndarray, costs: DenseCosts
          ) -> tuple[np.ndarray, np.ndarray]:
    """(mIoU (P,), MACs per frame (P,)) of P exit assignments (P, tiles)."""
    exit_stage = np.atleast_2d(exit_stage)
    k = len(members)
    cms = sum(np.einsum("pt,tij->pij", (exit_stage == j).astype(np.int64),
                        stats.prefixes[tuple(members[:j + 1])].cm.astype(np.int64)) for j in range(k))
    reach = [(exit_stage >= j).sum(axis=1) / stats.frames for j in range(k)]
    macs = costs.frame[members[0]] + sum(costs.window[m] * reach[j] for j, m in enumerate(members) if j > 0)
    return miou_batch(cms), np.asarray(macs, np.float64)


def _two_stage_front(stats: DenseSplitStats, members: tuple[str, str], costs: DenseCosts
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact: every distinct tile confidence (and +inf: never exit) as the threshold."""
    p0, p1 = stats.prefixes[members[:1]], stats.prefixes[members]
    conf = np.where(p0.ok, p0.conf.astype(np.float64), -np.inf)
    order = np.argsort(-conf, kind="stable")
    values = conf[order]
    delta = (p0.cm.astype(np.int64) - p1.cm.astype(np.int64))[order]
    base = p1.cm.astype(np.int64).sum(axis=0)
    cum = np.concatenate([np.zeros((1, *base.shape), np.int64), np.cumsum(delta, axis=0)])
    # threshold values[i] lets tiles 0..(last index with that value) exit; +inf lets none exit
    finite = np.isfinite(values)
    last = np.flatnonzero(np.append(values[1:] != values[:-1], True) & finite)
    thresholds = np.concatenate([[np.inf], values[last]])
    exited = np.concatenate([[0], last + 1])
    cms = base[None] + cum[exited]
    acc = miou_batch(cms)
    deferred = (len(conf) - exited) / stats.frames
    macs = costs.frame[members[0]] + costs.window[members[1]] * deferred
    return thresholds[:, None], acc, macs


def _grid_front(stats: DenseSplitStats, members: tuple[str, ...], costs: DenseCosts, grid: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = []
    for j in range(len(members) - 1):
        c = stats.prefixes[members[:j + 1]].conf.astype(np.float64)
        axes.append(np.unique(np.concatenate([[np.inf], np.quantile(c, np.linspace(0, 1, grid))])))
    thr = np.array(list(itertools.product(*axes)), np.float64)
    acc, macs = [], []
    for chunk in np.array_split(thr, max(1, len(thr) // 256)):
        a, m = score(stats, members, exit_stages(stats, members, chunk), costs)
        acc.append(a)
        macs.append(m)
    return thr, np.concatenate(acc), np.concatenate(macs)


def sequence_front(stats: DenseSplitStats, members: tuple[str, ...], costs: DenseCosts,
                   grid: int = 16) -> SequenceFront:
    """The Pareto set (mIoU vs MACs per frame) over thresholds of one chain, on validation."""
    if len(members) == 2:
        thr, acc, macs = _two_stage_front(stats, members, costs)
        eps = 0.0
    else:
        thr, acc, macs = _grid_front(stats, members, costs, grid)
        eps = 1.0  # a quantile grid gives no bound: "exact up to 100 points" (finite, so JSON holds it)
    keep = pareto_indices(macs, acc)
    worst = costs.chain(members, [stats.tiles_per_frame] * len(members))
    return SequenceFront(members=tuple(members), worst_cost=float(worst), thresholds=thr[keep],
                         accuracy=acc[keep], mean_cost=macs[keep], eps_accuracy=eps,
                         redundant=np.zeros(len(keep), bool), resolution=None if len(members) == 2 else grid)


@dataclasses.dataclass
class DenseFrontier(Frontier):
    """A :class:`Frontier` whose accuracy is mIoU and whose cost is MACs per frame."""

    def with_intervals(self, candidates: Sequence[Candidate], level: float) -> list[Candidate]:
        """mIoU is not a proportion of independent samples, so no binomial interval: candidates unchanged."""
        return list(candidates)

    val_stats: DenseSplitStats | None = dataclasses.field(default=None, repr=False)
    test_stats: DenseSplitStats | None = dataclasses.field(default=None, repr=False)
    costs: DenseCosts | None = dataclasses.field(default=None, repr=False)

    @property
    def accuracy_metric(self) -> str:
        return "mIoU"

    def evaluate(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Candidates with validation exit histograms (tiles per stage) and test figures filled in."""
        out = []
        for c in candidates:
            fields: dict = {}
            for split, stats in (("val", self.val_stats), ("test", self.test_stats)):
                if stats is None:
                    continue
                if c.kind == "single":
                    acc = miou_from_confusion(stats.full_cm(c.members[0]))
                    macs, hist = self.costs.frame[c.members[0]], (stats.frames * stats.tiles_per_frame,)
                else:
                    stage = exit_stages(stats, c.members, np.array([c.thresholds]))
                    a, m = score(stats, c.members, stage, self.costs)
                    acc, macs = float(a[0]), float(m[0])
                    hist = tuple(int(x) for x in np.bincount(stage[0], minlength=len(c.members)))
                fields[f"{split}_exit_histogram"] = hist
                if split == "test":
                    fields.update(test_accuracy=acc, test_mean_cost=macs)
            out.append(dataclasses.replace(c, **fields))
        return out


def dense_frontier(val: DenseSplitStats, test: DenseSplitStats | None, costs: DenseCosts,
                   sequences: Sequence[tuple[str, ...]], confidence: str, order: str = "cheapest_first",
                   max_len: int = 4, grid: int = 16) -> DenseFrontier:
    """Every single member and every chain in ``sequences`` scored on validation."""
    names = sorted({p[0] for p in val.prefixes if len(p) == 1}, key=lambda n: costs.frame[n])
    singles = [SubsetScore((n,), miou_from_confusion(val.full_cm(n)), float(costs.frame[n])) for n in names]
    fronts = [sequence_front(val, tuple(s), costs, grid) for s in sequences]
    return DenseFrontier(
        singles=singles, ensembles=[], cascades=fronts, confidence=confidence, stage_overhead=0.0,
        cost_unit="MACs", order=order, max_len=max_len, label_free=False, reference=None,
        num_val=val.frames, num_test=test.frames if test is not None else 0,
        data=_Data({n: costs.frame[n] for n in names}, test is not None),
        val_stats=val, test_stats=test, costs=costs)


def select_dense(val: DenseSplitStats, test: DenseSplitStats | None, costs: DenseCosts,
                 sequences: Sequence[tuple[str, ...]], objective: str, budget: float | str,
                 confidence: str = "mean_max_prob", order: str = "cheapest_first", max_len: int = 4,
                 grid: int = 16) -> SelectionResult:
    """Pick the segmentation committee for a budget (``mean_cost``/``worst_cost`` in MACs per frame) or a
    target mIoU (``accuracy``: a number in [0, 1] or ``best_single``); test figures of the choice added."""
    if not val.prefixes:
        raise EdgeCommitteeError("no member statistics to select from")
    front = dense_frontier(val, test, costs, sequences, confidence, order, max_len, grid)
    chosen, target = choose(front, objective, budget, DENSE_KINDS)
    (chosen,) = front.evaluate([chosen])
    return SelectionResult(chosen, front, objective, budget, target)


def tiled_reference(stats: DenseSplitStats, member: str, costs: DenseCosts) -> dict:
    """mIoU and MACs per frame of ``member`` run on every tile window (the tile cascade's fair reference)."""
    return {"member": member, "miou": miou_from_confusion(stats.tiled_cm[member]),
            "macs_per_frame": float(costs.window[member] * stats.tiles_per_frame)}
