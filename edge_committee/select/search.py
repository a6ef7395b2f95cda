"""Threshold search: the Pareto set of (accuracy, mean cost) of every member sequence.

Notation: a sequence has K members, N validation samples; ``c_k(i)``, ``a_k(i)`` are the
confidence of sample i's running mean after stage k and whether its label is then correct
(:mod:`.stats`); ``s_k`` is member k's cost plus the stage overhead.

**Batch-aware costs.** With a latency model (:class:`~.data.StageCosts`) stage k+1 costs
``N f_{k+1}(P_k[1] / N)`` instead of ``s_{k+1} P_k[1]`` below: ``f`` is the expected latency of the
stage when that fraction of the samples reach it (for a batch of b, the survivors' count is
binomial), applied element-wise to the tallied grid; the rest of the search is unchanged, and
every candidate pays the model's per-call cost once.

**Sensitive samples.** A sample whose correctness is the same after every stage of the
sequence contributes the same to the accuracy wherever it exits; only the others ("sensitive")
can change the accuracy. The candidate thresholds are therefore taken from their confidences.

**Candidate thresholds.** For stage k the grid values are the sorted distinct values
``v_1 < ... < v_G`` of ``c_k`` over the sensitive samples (all of them, or G of them at evenly
spaced ranks, including the smallest and largest, when there are more than the resolution G).
Threshold index ``j`` means: 0 = -inf (always exit), 1..G = exit iff ``c_k > v_j`` (the
threshold is the next float32 above ``v_j``), G+1 = +inf (never exit). A sample's bucket is
``h_k(i) = 1 + #{v < c_k(i)}`` (0 when its logits were not finite: it cannot exit), and it
continues past stage k iff ``h_k(i) <= j_k``.

**Exact tally of every threshold combination at once.** Telescoping over stages,

    N * accuracy(j_0..j_{K-2}) = sum_i a_0(i) + sum_{k<K-1} P_k[a_{k+1} - a_k](j_0..j_k)
    N * mean_cost(j_0..j_{K-2}) = N s_0 + sum_{k<K-1} s_{k+1} P_k[1](j_0..j_k)

where ``P_k[w](j) = sum_i w(i) [h_0(i) <= j_0, ..., h_k(i) <= j_k]`` is the inclusive cumulative
sum over a (k+1)-dimensional histogram of the joint buckets (one ``bincount`` plus one cumsum per
axis). The stage statistics ``c_k``, ``a_k`` depend only on the prefix ``m_0..m_k``: a depth-first
walk over prefixes computes them once per prefix (O(N C)) and shares them with every sequence
that starts with it.
The Pareto set of the grid takes O(points + N): accuracy counts are integers, so the cheapest
point per count level (``np.minimum.at``) and a suffix minimum over levels give it without a sort.

**Exactness and bound.** Round any threshold vector ``t`` *down* to the grid (largest
``v_j < t_k``, behaviour ``c_k > v_j``; -inf if there is none): samples exit no later, so the
mean cost can only fall, and a sensitive sample changes its decision at stage k only if its
``c_k`` lies strictly inside a gap between adjacent grid values (no sensitive confidence lies below
``v_1``). So with ``B'_k`` = the most sensitive samples strictly inside one gap of stage k, every
achievable point ``(acc, cost)`` has a computed point ``(acc', cost')`` with ``cost' <= cost`` and
``acc' >= acc - eps``, ``eps = sum_k B'_k / N``: an additive epsilon-Pareto set, computed and
reported per sequence. When every sensitive value is a grid value (always for K = 2, and whenever
a stage has at most G distinct sensitive confidences) ``eps = 0`` and the front is exact: it equals
the Pareto set of a brute force over every threshold combination.

**Complexity** per sequence of length K with per-stage resolution G: O(K N log N + K (G+2)^(K-1))
time and O(N + (G+2)^(K-1)) memory, plus O(N C) per distinct prefix for the stage statistics;
defaults (:data:`DEFAULT_GRID`): exact for K = 2, G = 512 for K = 3, G = 96 for K = 4, about
2.5e5 grid points per sequence beyond. On synthetic data (8 members, N = 10,000) the bound is
eps <= 0.1% for K = 3 and <= 0.8% for K = 4, and the front found is within 0.04% of one computed
at G = 160.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from edge_committee.select.stats import SplitOutputs, StageStats, native as _native

#: Per-stage candidate resolution by sequence length; ``None`` means every distinct value (exact).
DEFAULT_GRID: dict[int, int | None] = {2: None, 3: 512, 4: 96}

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
    return max(2, int(_POINTS_BEYOND ** (1.0 / (length - 1))) - 2)


@dataclasses.dataclass
class StageGrid:
    """Candidate thresholds of one stage of one sequence and every sample's bucket in them.

    Threshold index ``j`` in 0..G+1: 0 = -inf (every sample may exit), ``j`` in 1..G = exit iff
    ``conf > values[j-1]`` (written as the next float32 above it), G+1 = +inf (never exit).
    """

    values: np.ndarray  #: (G,) float32 sorted distinct grid values
    bucket: np.ndarray  #: (N,) int32 or int64 h: 0 = cannot exit, else 1 + #{values < conf}
    gap: int  #: most sensitive samples strictly inside one gap (B'_k); 0 means exact

    @property
    def size(self) -> int:
        """Number of threshold indices and of buckets, G + 2."""
        return self.values.shape[0] + 2

    def thresholds(self) -> np.ndarray:
        """(G + 2,) float64 threshold of each index j: -inf, next float32 above v_1..v_G, +inf."""
        above = np.nextafter(self.values, np.float32(np.inf)).astype(np.float64)
        return np.concatenate([[-np.inf], above, [np.inf]])


def make_grid(conf: np.ndarray, ok: np.ndarray, sensitive: np.ndarray, size: int | None) -> StageGrid:
    """Grid values for confidences ``conf`` (N,) of the samples that may exit (``ok``).

    The values are the distinct confidences of the ``sensitive`` samples (N,) bool — those whose
    correctness differs between stages; the others cannot change accuracy — all of them when
    there are at most ``size`` (or ``size`` is None), else ``size`` at evenly spaced ranks
    including the smallest and the largest.
    """
    vals = np.sort(conf[ok & sensitive])
    distinct = _sorted_unique(vals)
    if size is None or distinct.shape[0] <= size:
        values = distinct
    else:
        picks = np.round(np.linspace(0, vals.shape[0] - 1, max(size, 2))).astype(np.int64)
        values = _sorted_unique(vals[picks])
    native = _native("select_buckets")
    if native is not None and conf.dtype == np.float32 and values.dtype == np.float32:
        bucket = native(conf, np.ascontiguousarray(ok, bool), values)
        b = bucket - 1  # = searchsorted(values, conf, "left") where ok
    else:
        b = np.searchsorted(values, conf, side="left")
        bucket = np.where(ok, b + 1, 0).astype(np.int64)
    gap = 0
    if values.size < distinct.size:  # only sensitive samples strictly inside a gap count
        idx = np.flatnonzero(ok & sensitive)
        at_value = conf[idx] == values[np.minimum(b[idx], values.shape[0] - 1)]
        inner = idx[~at_value]
        gap = int(np.bincount(bucket[inner]).max()) if inner.size else 0
    return StageGrid(values=values, bucket=bucket, gap=gap)


def _sorted_unique(vals: np.ndarray) -> np.ndarray:
    """``np.unique`` of an already sorted array without sorting it again."""
    if vals.size < 2:
        return vals.copy()
    return vals[np.concatenate([[True], vals[1:] != vals[:-1]])]


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


def grid_front(cost: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Flat indices of the Pareto set of points with integer-valued ``count`` (e.g. N * accuracy).

    O(P + range of count): the cheapest point of each count level via ``np.minimum.at``, then the
    levels cheaper than every higher level. Result by increasing cost (and count).
    """
    cost = np.asarray(cost, np.float64).ravel()
    level = np.rint(np.asarray(count, np.float64).ravel()).astype(np.int64)
    if level.size == 0:
        return np.zeros(0, np.int64)
    level -= level.min()
    cheapest = np.full(int(level.max()) + 1, np.inf)
    np.minimum.at(cheapest, level, cost)
    above = np.append(np.minimum.accumulate(cheapest[::-1])[::-1][1:], np.inf)
    on_front = cheapest < above
    cand = np.flatnonzero(on_front[level] & (cost == cheapest[level]))
    _, first = np.unique(level[cand], return_index=True)
    return cand[first]


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
    #: (P,) bool: an always-exit threshold (-inf) stops every validation sample before the last
    #: stage, so the point equals a shorter candidate (same accuracy and mean cost, lower worst case)
    redundant: np.ndarray
    resolution: int | None  #: per-stage candidate count G (None = every distinct value)


@dataclasses.dataclass
class SubsetScore:
    """A single member or an ensemble: validation accuracy and cost (worst = mean)."""

    members: tuple[str, ...]
    accuracy: float
    cost: float


class _Node:
    """A member prefix during the depth-first walk: its stage statistics, shared by its
    descendants."""

    def __init__(self, parent: _Node | None, index: int, stats: StageStats, cum_cost: float):
        self.parent = parent
        self.members: tuple[int, ...] = (parent.members if parent else ()) + (index,)
        self.depth = len(self.members) - 1
        self.stats = stats
        self.cum_cost = cum_cost  #: S_depth, cost after running every stage so far
        self.all_correct = stats.correct if parent is None else parent.all_correct & stats.correct
        self.any_correct = stats.correct if parent is None else parent.any_correct | stats.correct

    def path(self) -> list[_Node]:
        """The nodes from the first stage to this one."""
        out: list[_Node] = []
        node: _Node | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]


def _cumulative(flat: np.ndarray, weights: np.ndarray | None, dims: tuple[int, ...]) -> np.ndarray:
    """Inclusive cumulative sum over every axis of the joint-bucket histogram.

    The weights are integers (counts, or correctness differences in {-1, 0, 1}), so the sums are
    exact in int32 (|sum| <= N < 2^31), which halves the memory traffic of the cumulative sums
    that dominate the tally."""
    size = int(np.prod(dims))
    kind = np.int32 if flat.shape[0] < 2**31 else np.int64
    hist = np.bincount(flat, weights=weights, minlength=size).astype(kind).reshape(dims)
    for axis in range(hist.ndim):
        np.cumsum(hist, axis=axis, out=hist)
    return hist


def tally(
    path: Sequence[StageStats],
    stage_cost: Sequence[float | Callable[[np.ndarray], np.ndarray]],
    grids: Sequence[StageGrid],
) -> tuple[np.ndarray, np.ndarray]:
    """N * accuracy and N * mean cost of every threshold combination, as (K-1)-dim grids.

    ``path``: stage statistics of the K stages; ``stage_cost``: (K,) member cost + overhead, each
    a number (cost per sample that reaches the stage) or, after the first, a function of the
    fraction reaching it (batch-aware, see the module docstring); ``grids``: the K-1 thresholded
    stages' grids. Implements the telescoped sums of the module docstring.
    """
    n = path[0].correct.shape[0]
    acc = np.array(int(path[0].correct.sum()), np.int32 if n < 2**31 else np.int64)
    cost = np.array(n * float(stage_cost[0]))
    flat = np.zeros(n, np.int64)
    dims: tuple[int, ...] = ()
    for k, g in enumerate(grids):
        flat = flat * g.size + g.bucket
        dims = dims + (g.size,)
        diff = path[k + 1].correct.astype(np.int8) - path[k].correct
        acc = acc[..., None] + _cumulative(flat, diff, dims)
        reach = _cumulative(flat, None, dims)
        s = stage_cost[k + 1]
        cost = cost[..., None] + (n * s(reach / n) if callable(s) else float(s) * reach)
    return acc, cost


def _native_front():
    """The extension's ``select_grid_front``, or None."""
    return _native("select_grid_front")


def front_of_grid(
    path: Sequence[StageStats],
    stage_cost: Sequence[float | Callable[[np.ndarray], np.ndarray]],
    grids: Sequence[StageGrid],
    native: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Pareto set of :func:`tally`'s grid: (flat indices, N * accuracy, N * mean cost), by
    increasing cost, the same points as ``grid_front(cost, acc)`` on ``tally``'s grids.

    Uses the C++ kernel of the extension (no (G+2)^(K-1) accuracy and cost arrays, one pass) when
    it is built and every stage cost is a number; ``native=False`` forces NumPy, ``True`` requires
    the kernel."""
    fn = _native_front() if native is not False else None
    numeric = not any(callable(s) for s in stage_cost)
    if native and (fn is None or not numeric):
        raise RuntimeError("the native selection tally needs edge_committee._C and numeric stage costs")
    if fn is None or not numeric:
        acc, cost = tally(path, stage_cost, grids)
        idx = grid_front(cost, acc)
        return idx, acc.ravel()[idx].astype(np.int64), cost.ravel()[idx]
    n = path[0].correct.shape[0]
    buckets = np.stack([g.bucket for g in grids]).astype(np.int32)
    diffs = np.stack([path[k + 1].correct.astype(np.int8) - path[k].correct for k in range(len(grids))])
    sizes = np.array([g.size for g in grids], np.int64)
    base = n * float(stage_cost[0])
    return fn(buckets, sizes, diffs, int(path[0].correct.sum()), base,
              np.array([float(s) for s in stage_cost[1:]], np.float64))


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
        groups: one group per name; a sequence never holds two members of one group.
        stage_fns: name -> batch-aware expected stage cost (overhead included) as a function of
            the reach fraction, or None for costs proportional to the samples run.
        per_call: cost every candidate pays once per call.
        worst_limit: skip every sequence (and its extensions) whose members' summed cost plus
            ``per_call`` exceeds this (a worst-case budget: exact, costs only grow).
        first_limit: skip every sequence whose first member's cost plus ``per_call`` exceeds this
            (a mean-cost budget: the first stage runs on every sample, so exact too).
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
        groups: Sequence[str] | None = None,
        stage_fns: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
        per_call: float = 0.0,
        worst_limit: float = math.inf,
        first_limit: float = math.inf,
    ):
        self.split = split
        self.worst_limit = float(worst_limit)
        self.first_limit = float(first_limit)
        self.names = list(names)
        self.groups = list(groups) if groups is not None else list(self.names)
        self.costs = [float(costs[n]) for n in self.names]
        self.max_len = max_len
        self.order = order
        self.overhead = float(stage_overhead)
        self.res = {ell: resolution(ell, grid) for ell in range(2, max_len + 1)}
        self.n = split.num_samples
        self.stage_fns = stage_fns
        self.per_call = float(per_call)

    def run(self) -> tuple[list[SubsetScore], list[SubsetScore], list[SequenceFront]]:
        """Singles, ensembles (subsets of size 2..max_len) and cascade fronts."""
        singles: list[SubsetScore] = []
        ensembles: list[SubsetScore] = []
        fronts: list[SequenceFront] = []
        for node in self._walk():
            names = tuple(self.names[i] for i in node.members)
            acc = float(node.stats.correct.mean()) if self.n else 0.0
            if node.depth == 0:
                singles.append(SubsetScore(names, acc, self.costs[node.members[0]] + self.per_call))
                continue
            if list(node.members) == sorted(node.members):
                cost = sum(self.costs[i] for i in node.members) + self.per_call
                ensembles.append(SubsetScore(names, acc, cost))
            fronts.append(self._front(node, names))
        return singles, ensembles, fronts

    def _children(self, node: _Node | None) -> Iterator[int]:
        used = {self.groups[i] for i in node.members} if node else set()
        start = node.members[-1] + 1 if node and self.order == "cheapest_first" else 0
        spent = self.per_call + (sum(self.costs[i] for i in node.members) if node else 0.0)
        first_ok = node is not None or self.first_limit == math.inf
        return (
            i for i in range(start, len(self.names))
            if self.groups[i] not in used and spent + self.costs[i] <= self.worst_limit
            and (first_ok or self.per_call + self.costs[i] <= self.first_limit)
        )

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

    def _make(self, parent: _Node | None, index: int) -> _Node:
        stage = parent.depth + 1 if parent else 0
        stats = self.split.extend(parent.stats if parent else None, self.names[index], stage)
        step = self.costs[index] + self.overhead
        return _Node(parent, index, stats, (parent.cum_cost if parent else self.per_call) + step)

    def _front(self, node: _Node, names: tuple[str, ...]) -> SequenceFront:
        r = self.res[node.depth + 1]
        path = node.path()
        sensitive = node.any_correct & ~node.all_correct
        grids = [make_grid(p.stats.conf, p.stats.ok, sensitive, r) for p in path[:-1]]
        stage_cost: list = [self.costs[p.members[-1]] + self.overhead for p in path]
        if self.stage_fns is not None:  # batch-aware: the first stage always runs on everything
            stage_cost[1:] = [self.stage_fns[self.names[p.members[-1]]] for p in path[1:]]
        idx, acc, cost = front_of_grid([p.stats for p in path], stage_cost, grids)
        coords = np.unravel_index(idx, tuple(g.size for g in grids))
        thr = np.stack([g.thresholds()[j] for g, j in zip(grids, coords)], axis=1)
        redundant = np.zeros(idx.shape[0], bool)
        for k, j in enumerate(coords):
            if path[k].stats.ok.all():
                redundant |= j == 0
        n = max(self.n, 1)
        return SequenceFront(
            members=names,
            worst_cost=node.cum_cost,
            thresholds=thr,
            accuracy=acc / n,
            mean_cost=cost / n + self.per_call,
            eps_accuracy=sum(g.gap for g in grids) / n,
            redundant=redundant,
            resolution=r,
        )
