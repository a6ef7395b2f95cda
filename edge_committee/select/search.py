"""Threshold search: the Pareto set of (accuracy, mean cost) of every member sequence.

Notation: a sequence has K members, N validation samples; ``c_k(i)``, ``a_k(i)`` are the
confidence of sample i's running mean after stage k and whether its label is then correct
(:mod:`.stats`); ``s_k`` is member k's cost plus the stage overhead.

**Candidate thresholds.** For stage k the grid values are the sorted distinct values
``v_1 < ... < v_G`` of ``c_k`` (all of them, or G of them at evenly spaced ranks, including the
smallest and largest, when there are more than the resolution ``G``). Threshold index ``j`` means:
0 = -inf (always exit), 1..G-1 = exit iff ``c_k > v_j`` (the threshold is the next float32 above
``v_j``), G = +inf (never exit). With every distinct value as grid values these are exactly the
behaviours of every threshold (each distinct value, -inf and +inf). A sample's bucket is
``h_k(i) = 1 + #{v < c_k(i)}`` (0 when its logits were not finite: it cannot exit), and it
continues past stage k iff ``h_k(i) <= j_k``.

**Exact tally of every threshold combination at once.** Telescoping over stages,

    N * accuracy(j_0..j_{K-2}) = sum_i a_0(i) + sum_{k<K-1} P_k[a_{k+1} - a_k](j_0..j_k)
    N * mean_cost(j_0..j_{K-2}) = N s_0 + sum_{k<K-1} s_{k+1} P_k[1](j_0..j_k)

where ``P_k[w](j) = sum_i w(i) [h_0(i) <= j_0, ..., h_k(i) <= j_k]`` is the inclusive cumulative
sum over a (k+1)-dimensional histogram of the joint buckets (one ``bincount`` plus one cumsum per
axis). Both grids of a sequence are its parent prefix's grids plus one term, so a depth-first walk
over prefixes computes each term once and shares it with every sequence that has that prefix.
Dominated grid points are dropped cheaply (cost is nondecreasing along every axis, so a point is
dominated when an earlier point on an axis is at least as accurate), the rest are sorted once.

**Exactness and bound.** With every distinct value as grid values (always for K = 2, and
whenever a stage has at most G distinct confidences) every achievable threshold behaviour is
enumerated and the front is exact. Otherwise, round any threshold vector ``t`` *down* to the grid
(largest ``v_j < t_k``, behaviour ``c_k > v_j``): samples exit no later, so the mean cost can
only fall, and only samples with ``c_k`` strictly inside a gap between adjacent grid values
change their decision at stage k. A sample whose correctness is the same at every stage cannot
change the accuracy, so with ``B'_k`` = the largest number of the other ("sensitive") samples
strictly inside one gap of stage k, every achievable point ``(acc, cost)`` has a computed point
``(acc', cost')`` with ``cost' <= cost`` and ``acc' >= acc - eps``, ``eps = sum_k B'_k / N``
(an additive epsilon-Pareto set). ``eps`` is computed and reported per sequence.

**Complexity** per sequence of length K with per-stage resolution G: O(N + K (G+1)^(K-1)) time and
O((G+1)^(K-1)) memory, plus O(N C) per distinct prefix for the stage statistics; defaults
(:data:`DEFAULT_GRID`): exact for K = 2 (O(N log N)), G = 256 for K = 3, G = 64 for K = 4, and
about 2.5e5 grid points per sequence beyond.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping, Sequence

import numpy as np

from edge_committee.select.stats import SplitOutputs, StageStats

#: Per-stage candidate resolution by sequence length; ``None`` means every distinct value (exact).
DEFAULT_GRID: dict[int, int | None] = {2: None, 3: 256, 4: 64}

#: Grid points per sequence aimed at for lengths not in :data:`DEFAULT_GRID`.
_POINTS_BEYOND = 250_000


def resolution(length: int, grid: Mapping[int, int | None] | None = None) -> int | None:
    """Per-stage candidate count G for sequences of ``length`` members (None = exact)."""
    table = {**DEFAULT_GRID, **(grid or {})}
    if length in table:
        g = table[length]
        if g is not None and g < 1:
            raise ValueError(f"grid resolution for length {length} must be >= 1 or None, got {g}")
        return g
    return max(2, int(_POINTS_BEYOND ** (1.0 / (length - 1))) - 1)


@dataclasses.dataclass
class StageGrid:
    """Candidate thresholds of one stage and every sample's bucket in them.

    Threshold index ``j`` in 0..G: 0 = -inf (every sample may exit), ``j`` in 1..G-1 = exit iff
    ``conf > values[j-1]`` (written as the next float32 above it), G = +inf (never exit).
    """

    values: np.ndarray  #: (G,) float32 sorted distinct grid values; values[-1] = the largest conf
    bucket: np.ndarray  #: (N,) int64 h: 0 = cannot exit, else 1 + #{values < conf}
    inner: np.ndarray  #: (N,) bool, confidence strictly inside a gap between grid values
    gap: int  #: most samples strictly inside one gap (B_k); 0 means exact

    @property
    def size(self) -> int:
        """Number of threshold indices and of buckets, G + 1."""
        return self.values.shape[0] + 1

    def thresholds(self) -> np.ndarray:
        """(G + 1,) float64 threshold of each index j: -inf, next float32 above v_1..v_{G-1}, +inf."""
        above = np.nextafter(self.values[:-1], np.float32(np.inf)).astype(np.float64)
        return np.concatenate([[-np.inf], above, [np.inf]])


def make_grid(conf: np.ndarray, ok: np.ndarray, size: int | None) -> StageGrid:
    """Grid values for confidences ``conf`` (N,) of the samples with ``ok`` (N,).

    Every distinct value when there are at most ``size`` (or ``size`` is None), else ``size``
    values at evenly spaced ranks, always including the smallest and the largest.
    """
    vals = np.sort(conf[ok])
    distinct = np.unique(vals)
    if size is None or distinct.shape[0] <= size:
        values = distinct
    else:
        picks = np.round(np.linspace(0, vals.shape[0] - 1, max(size, 2))).astype(np.int64)
        values = np.unique(vals[picks])
    b = np.searchsorted(values, conf, side="left")
    bucket = np.where(ok, b + 1, 0).astype(np.int64)
    if values.size:
        inner = ok & (conf != values[np.minimum(b, values.shape[0] - 1)])
    else:
        inner = np.zeros_like(ok)
    gap = int(np.bincount(bucket[inner]).max()) if inner.any() else 0
    return StageGrid(values=values, bucket=bucket, inner=inner, gap=gap)


def _exclusive_cummax(a: np.ndarray, axis: int) -> np.ndarray:
    run = np.maximum.accumulate(a, axis=axis)
    out = np.empty_like(run)
    lead = [slice(None)] * a.ndim
    lead[axis] = slice(0, 1)
    out[tuple(lead)] = -np.inf
    dst = [slice(None)] * a.ndim
    dst[axis] = slice(1, None)
    src = [slice(None)] * a.ndim
    src[axis] = slice(0, -1)
    out[tuple(dst)] = run[tuple(src)]
    return out


def pareto_indices(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Indices of the Pareto set of points (lower ``cost``, higher ``acc``), by increasing cost.

    Of points with equal cost and accuracy one is kept; the result has strictly increasing cost
    and accuracy.
    """
    cost = np.asarray(cost, np.float64).ravel()
    acc = np.asarray(acc, np.float64).ravel()
    if cost.size == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((-acc, cost))
    a = acc[order]
    prev = np.concatenate([[-np.inf], np.maximum.accumulate(a)[:-1]])
    return order[a > prev]


def grid_front(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Flat indices of the Pareto set of a grid whose cost is nondecreasing along every axis."""
    keep = np.ones(acc.shape, bool)
    for axis in range(acc.ndim):
        if acc.shape[axis] > 1:
            keep &= acc > _exclusive_cummax(acc, axis)
    idx = np.flatnonzero(keep)
    return idx[pareto_indices(cost.ravel()[idx], acc.ravel()[idx])]


@dataclasses.dataclass
class SequenceFront:
    """The Pareto set over thresholds of one member sequence (a cascade) on validation data.

    Costs are in the data's cost unit; ``mean_cost`` is the expectation over the validation split
    including one stage overhead per executed stage; ``worst_cost`` runs every stage.
    """

    members: tuple[str, ...]
    worst_cost: float
    thresholds: np.ndarray  #: (P, K-1) float64; -inf = always exit, +inf = never exit
    accuracy: np.ndarray  #: (P,) validation accuracy (or agreement), increasing
    mean_cost: np.ndarray  #: (P,) increasing
    eps_accuracy: float  #: accuracy the search may miss at no higher mean cost (0 = exact)
    resolution: int | None  #: per-stage candidate count G (None = every distinct value)


@dataclasses.dataclass
class SubsetScore:
    """A single member or an ensemble: validation accuracy and cost (worst = mean)."""

    members: tuple[str, ...]
    accuracy: float
    cost: float


class _Node:
    """A member prefix during the depth-first walk, with its per-resolution grids."""

    def __init__(self, parent: "_Node | None", index: int, stats: StageStats, cum_cost: float):
        self.parent = parent
        self.members: tuple[int, ...] = (parent.members if parent else ()) + (index,)
        self.depth = len(self.members) - 1
        self.stats = stats
        self.cum_cost = cum_cost  #: S_depth
        self.all_correct = stats.correct if parent is None else parent.all_correct & stats.correct
        self.any_correct = stats.correct if parent is None else parent.any_correct | stats.correct
        self.grid: dict[int | None, StageGrid] = {}
        self.joint: dict[int | None, tuple[np.ndarray, tuple[int, ...]]] = {}
        self._reach: dict[int | None, np.ndarray] = {}
        self.acc: dict[int | None, np.ndarray] = {}
        self.cost: dict[int | None, np.ndarray] = {}

    def reach(self, r: int | None) -> np.ndarray:
        """P_depth[1]: samples continuing past this stage, per threshold combination."""
        if r not in self._reach:
            flat, dims = self.joint[r]
            self._reach[r] = _cumulative(flat, None, dims)
        return self._reach[r]

    def stage_grids(self, r: int | None) -> list[StageGrid]:
        """Grids of the thresholded stages 0..depth-1 at resolution r, first stage first."""
        out: list[StageGrid] = []
        node = self.parent
        while node is not None:
            out.append(node.grid[r])
            node = node.parent
        return out[::-1]


def _cumulative(flat: np.ndarray, weights: np.ndarray | None, dims: tuple[int, ...]) -> np.ndarray:
    """Inclusive cumulative sum over every axis of the joint-bucket histogram."""
    size = int(np.prod(dims))
    hist = np.bincount(flat, weights=weights, minlength=size).astype(np.float64).reshape(dims)
    for axis in range(hist.ndim):
        np.cumsum(hist, axis=axis, out=hist)
    return hist


class PrefixWalk:
    """Depth-first walk over member prefixes computing every sequence's Pareto set.

    Args:
        split: validation outputs with the target labels.
        names: member names, cheapest first.
        costs: member name -> cost.
        max_len: longest sequence (>= 1).
        order: ``"cheapest_first"`` (sequences follow ``names``) or ``"any"`` (permutations).
        stage_overhead: cost added per executed cascade stage (>= 0).
        grid: overrides of :data:`DEFAULT_GRID`.
    """

    def __init__(
        self,
        split: SplitOutputs,
        names: Sequence[str],
        costs: Mapping[str, float],
        max_len: int,
        order: str,
        stage_overhead: float,
        grid: Mapping[int, int | None] | None = None,
    ):
        self.split = split
        self.names = list(names)
        self.costs = [float(costs[n]) for n in self.names]
        self.max_len = max_len
        self.order = order
        self.overhead = float(stage_overhead)
        self.res = {ell: resolution(ell, grid) for ell in range(2, max_len + 1)}
        self.n = split.num_samples

    def run(self) -> tuple[list[SubsetScore], list[SubsetScore], list[SequenceFront]]:
        """Singles, ensembles (subsets of size 2..max_len) and cascade fronts."""
        singles: list[SubsetScore] = []
        ensembles: list[SubsetScore] = []
        fronts: list[SequenceFront] = []
        for node in self._walk():
            names = tuple(self.names[i] for i in node.members)
            acc = float(node.stats.correct.mean()) if self.n else 0.0
            if node.depth == 0:
                singles.append(SubsetScore(names, acc, self.costs[node.members[0]]))
                continue
            if list(node.members) == sorted(node.members):
                ensembles.append(SubsetScore(names, acc, sum(self.costs[i] for i in node.members)))
            fronts.append(self._front(node, names))
        return singles, ensembles, fronts

    def _children(self, node: _Node | None) -> Iterator[int]:
        used = set(node.members) if node else set()
        start = node.members[-1] + 1 if node and self.order == "cheapest_first" else 0
        return (i for i in range(start, len(self.names)) if i not in used)

    def _walk(self) -> Iterator[_Node]:
        stack: list[tuple[_Node | None, Iterator[int]]] = [(None, self._children(None))]
        while stack:
            parent, todo = stack[-1]
            index = next(todo, None)
            if index is None:
                stack.pop()
                continue
            node = self._make(parent, index)
            yield node
            if node.depth + 1 < self.max_len:
                stack.append((node, self._children(node)))

    def _resolutions(self, lengths: range) -> set[int | None]:
        return {self.res[ell] for ell in lengths if ell >= 2}

    def _make(self, parent: _Node | None, index: int) -> _Node:
        name = self.names[index]
        stats = self.split.extend(parent.stats if parent else None, name, parent.depth + 1 if parent else 0)
        step = self.costs[index] + self.overhead
        node = _Node(parent, index, stats, (parent.cum_cost if parent else 0.0) + step)
        d = node.depth
        # grids and joint buckets of this stage, for longer sequences that threshold it
        for r in self._resolutions(range(d + 2, self.max_len + 1)):
            g = make_grid(stats.conf, stats.ok, r)
            node.grid[r] = g
            if parent is None:
                node.joint[r] = (g.bucket, (g.size,))
            else:
                flat, dims = parent.joint[r]
                node.joint[r] = (flat * g.size + g.bucket, dims + (g.size,))
        # accuracy and cost grids of this prefix as a full sequence, per needed resolution
        for r in self._resolutions(range(max(d + 1, 2), self.max_len + 1)):
            if parent is None:
                node.acc[r] = np.array(float(stats.correct.sum()))
                node.cost[r] = np.array(self.n * node.cum_cost)
                continue
            flat, dims = parent.joint[r]
            diff = stats.correct.astype(np.float64) - parent.stats.correct
            node.acc[r] = parent.acc[r][..., None] + _cumulative(flat, diff, dims)
            node.cost[r] = parent.cost[r][..., None] + step * parent.reach(r)
        return node

    def _front(self, node: _Node, names: tuple[str, ...]) -> SequenceFront:
        r = self.res[node.depth + 1]
        acc, cost = node.acc[r], node.cost[r]
        idx = grid_front(cost, acc)
        grids = node.stage_grids(r)
        coords = np.unravel_index(idx, acc.shape)
        thr = np.stack([g.thresholds()[j] for g, j in zip(grids, coords)], axis=1)
        sensitive = node.any_correct & ~node.all_correct
        gap_sens = sum(
            int(np.bincount(g.bucket[g.inner & sensitive]).max()) if (g.inner & sensitive).any() else 0
            for g in grids
        )
        n = max(self.n, 1)
        return SequenceFront(
            members=names,
            worst_cost=node.cum_cost,
            thresholds=thr,
            accuracy=acc.ravel()[idx] / n,
            mean_cost=cost.ravel()[idx] / n,
            eps_accuracy=gap_sens / n,
            resolution=r,
        )

