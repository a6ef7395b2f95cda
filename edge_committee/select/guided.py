"""Front-guided search: the frontier of a large zoo without scoring every member sequence.

The exhaustive walk (:class:`.search.PrefixWalk`) scores every sequence of up to ``max_len``
members: sum_k C(M, k) of them (M = 50, L = 4: 251,125, hours at N = 50,000). The guided walk
scores them level by level and scores longer sequences only near promising shorter ones:

1. every single member and every sequence of two members (and its ensemble) is scored exactly
   as the exhaustive walk scores it;
2. after level k is scored, the *incumbent* fronts are built from everything scored so far:
   ``F_mean(c)`` = the best validation accuracy of any candidate with mean cost <= c, and
   ``F_worst(w)`` the same for worst-case cost;
3. a k-member sequence is *promising* if one of its front points beats its own prefix's front by
   at least ``gain`` (near its cheap end every sequence equals its prefix) and comes within
   ``delta`` of ``F_mean`` at its mean cost, or its best accuracy comes within ``delta`` of
   ``F_worst`` at its worst-case cost;
4. a (k+1)-member sequence is scored when at least :data:`DEFAULT_PARENTS` of the k-member
   sequences it contains (it minus one member) are promising, exactly like the exhaustive walk
   scores it (same grids, same eps); then the next level is decided.

Every returned candidate is therefore a candidate of the exhaustive frontier with identical
figures; only unpromising sequences are missing. The rule is a heuristic (a good long cascade
contains good shorter ones), not a proof: the accuracy missed against the exhaustive frontier is
*measured* (docs/selection_benchmark.md, tests/select/test_guided.py), not guaranteed, for
sequences of 3 or more members. Sequences of at most 2 members are exact.

Stage statistics are not kept between levels (at 1,000 classes one prefix is N x C float32):
the sequences to score are walked in lexicographic order, sharing common prefixes, so memory
holds at most ``max_len`` prefixes' statistics at a time plus the scored fronts.

Complexity: O(M N C + M^2 (N C + N log N)) for levels 1-2, then per level k >= 3 the scored
sequences (at most M times the promising ones of level k-1), each O(k N C + k N log N +
(G_k + 2)^(k-1)) as in :mod:`.search` (its prefix statistics are recomputed, shared along common
prefixes).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edge_committee.select.search import PrefixWalk, SequenceFront, SubsetScore, _Node, pareto_indices

#: Default window: a prefix is grown when its front comes within this much accuracy (a fraction:
#: 0.004 = 0.4 points) of the incumbent front.
DEFAULT_DELTA = 0.004
#: Only front points that beat the sequence's own prefix by at least this much accuracy (a
#: fraction) can make it promising: near its cheap end every sequence equals its prefix.
DEFAULT_GAIN = 0.005
#: Threads scoring the sequences of one level (levels 3 and up): the CPUs this process may use, at most 2.
THREADS = max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))
#: A sequence is scored when at least this many of the sequences one member shorter that it
#: contains were promising.
DEFAULT_PARENTS = 2


@dataclasses.dataclass
class SearchInfo:
    """What the search did, for the report and the CLI."""

    mode: str  #: "exhaustive" or "guided"
    sequences_total: int  #: member sequences of 2..max_len members in the search space
    sequences_scored: int  #: of which scored (threshold search run)
    seconds: float
    delta: float | None = None  #: guided window (accuracy fraction), None when exhaustive
    scored_by_length: dict[int, int] = dataclasses.field(default_factory=dict)
    total_by_length: dict[int, int] = dataclasses.field(default_factory=dict)
    cost_limit: dict[str, float] | None = None  #: budget pruning applied (exact), if any
    #: how the member outputs were held: {"form": "full"} or {"form": "compact", "k", "fallback_samples"}
    outputs: dict | None = None

    @property
    def sequences_pruned(self) -> int:
        return self.sequences_total - self.sequences_scored

    @property
    def bound(self) -> str:
        """The guarantee, in words."""
        if self.mode == "exhaustive":
            text = "every sequence scored (exact up to the threshold-grid eps)"
        else:
            text = (f"singles, ensembles and cascades of <= 2 members exact; longer ones scored near shorter "
                    f"ones within {100 * (self.delta or 0):.2f} points of the incumbent front (heuristic: the "
                    "gap to exhaustive is measured, not proven)")
        if self.cost_limit:
            text += "; sequences over the budget skipped (exact)"
        if self.outputs and self.outputs.get("form") == "compact":
            text += (f"; member outputs held as {self.outputs['k']} candidate classes per sample "
                     f"(exact, {self.outputs['fallback_samples']:,} samples in full)")
        return text

    def to_dict(self, timing: bool = False) -> dict:
        """JSON-ready; ``seconds`` only with ``timing`` (so a manifest does not change from run to run)."""
        out = {
            "mode": self.mode,
            "sequences_total": self.sequences_total,
            "sequences_scored": self.sequences_scored,
            "sequences_pruned": self.sequences_pruned,
            "scored_by_length": {str(k): v for k, v in sorted(self.scored_by_length.items())},
            "total_by_length": {str(k): v for k, v in sorted(self.total_by_length.items())},
            "delta": self.delta,
            "cost_limit": self.cost_limit,
            "bound": self.bound,
            "outputs": self.outputs,
        }
        if timing:
            out["seconds"] = round(self.seconds, 3)
        return out

    def summary(self) -> str:
        """One line for the CLI."""
        return (f"search {self.mode}: {self.sequences_scored:,} of {self.sequences_total:,} sequences scored "
                f"({self.sequences_pruned:,} pruned) in {self.seconds:.1f} s; bound: {self.bound}")


def _point(cost: float, acc: float) -> Staircase:
    st = Staircase()
    st.add([cost], [acc])
    return st


def _staircase(f: SequenceFront) -> Staircase:
    st = Staircase()
    st.add(f.mean_cost, f.accuracy)
    return st


def count_sequences(groups: Sequence[str], max_len: int, order: str) -> dict[int, int]:
    """Number of member sequences of each length 2..max_len with no two members of one group.

    Cheapest-first: the elementary symmetric polynomials of the group sizes; ``"any"``: times k!.
    """
    sizes = list({g: sum(1 for x in groups if x == g) for g in groups}.values())
    e = [1] + [0] * max_len  # e[k] = ways to pick k members from distinct groups
    for s in sizes:
        for k in range(max_len, 0, -1):
            e[k] += e[k - 1] * s
    return {k: e[k] * (math.factorial(k) if order == "any" else 1) for k in range(2, max_len + 1)}


class Staircase:
    """Best accuracy at cost <= c over a set of points (a step function), merged incrementally."""

    def __init__(self) -> None:
        self.cost = np.zeros(0)
        self.acc = np.zeros(0)

    def add(self, cost: np.ndarray, acc: np.ndarray) -> None:
        c = np.concatenate([self.cost, np.asarray(cost, np.float64).ravel()])
        a = np.concatenate([self.acc, np.asarray(acc, np.float64).ravel()])
        keep = pareto_indices(c, a)
        self.cost, self.acc = c[keep], a[keep]

    def __call__(self, cost: np.ndarray) -> np.ndarray:
        """Best accuracy at cost <= ``cost`` (-inf below the cheapest point)."""
        i = np.searchsorted(self.cost, np.asarray(cost, np.float64), side="right") - 1
        return np.where(i >= 0, self.acc[np.maximum(i, 0)], -np.inf)


@dataclasses.dataclass
class _Scored:
    members: tuple[int, ...]
    front: SequenceFront


@dataclasses.dataclass
class _Members:
    """What :meth:`PrefixWalk._children` reads of a node."""

    members: tuple[int, ...]


class GuidedWalk(PrefixWalk):
    """:class:`.search.PrefixWalk` that grows only promising prefixes (module docstring).

    Extra args: ``delta`` (accuracy window, a fraction >= 0) and, through :class:`PrefixWalk`,
    ``worst_limit`` / ``first_limit`` budget pruning.
    """

    def __init__(self, *args, delta: float = DEFAULT_DELTA, gain: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.parents = DEFAULT_PARENTS
        self.delta = float(delta)
        self.gain = DEFAULT_GAIN if gain is None else float(gain)
        self._fronts: dict[tuple[int, ...], Staircase] = {}
        self.scored_by_length: dict[int, int] = {}
        self.threads = THREADS

    def run(self) -> tuple[list[SubsetScore], list[SubsetScore], list[SequenceFront]]:
        singles: list[SubsetScore] = []
        ensembles: list[SubsetScore] = []
        fronts: list[SequenceFront] = []
        mean_front, worst_front = Staircase(), Staircase()
        level: list[_Scored] = []
        # levels 1 and 2: the exhaustive walk cut at two members
        for members, score, front in self._score_all(self._short_sequences()):
            if front is None:
                singles.append(score)
            else:
                self._keep(members, score, front, ensembles, fronts, level)
        for s in singles:
            self._fronts[(self.names.index(s.members[0]),)] = _point(s.cost, s.accuracy)
        for s in singles + ensembles:
            mean_front.add([s.cost], [s.accuracy])
            worst_front.add([s.cost], [s.accuracy])
        for k in range(2, self.max_len):
            self._add_fronts(level, mean_front, worst_front)
            grow = [s for s in level if self._promising(s, mean_front, worst_front)]
            self._fronts = {s.members: _staircase(s.front) for s in level}  # parents of the next level
            level = []
            for members, ensemble, front in self._score_all(self._insertions([s.members for s in grow])):
                self._keep(members, ensemble, front, ensembles, fronts, level)
            if not level:
                break
        return singles, ensembles, fronts

    def _short_sequences(self) -> list[tuple[int, ...]]:
        """Every allowed single and (with ``max_len`` >= 2) pair, in the exhaustive walk's order."""
        out = []
        for i in self._children(None):
            out.append((i,))
            if self.max_len >= 2:
                out += [(i, j) for j in self._children(_Members((i,)))]
        return sorted(out)

    def _score(self, node: _Node) -> tuple[tuple[int, ...], SubsetScore | None, SequenceFront | None]:
        """A node's ensemble (for sorted members) and cascade front; thread-safe."""
        names = tuple(self.names[i] for i in node.members)
        acc = float(node.stats.correct.mean()) if self.n else 0.0
        if node.depth == 0:
            return node.members, SubsetScore(names, acc, self.costs[node.members[0]] + self.per_call), None
        ensemble = None
        if list(node.members) == sorted(node.members):
            ensemble = SubsetScore(names, acc, sum(self.costs[i] for i in node.members) + self.per_call)
        return node.members, ensemble, self._front(node, names)

    def _score_all(self, seqs: list[tuple[int, ...]]) -> list[tuple]:
        """:meth:`_score` of the given sequences (sorted), in order: split into contiguous chunks
        scored by :data:`THREADS` threads (the tallies, sorts and kernels release the GIL; each
        chunk re-derives the prefixes it starts inside, so the figures are the same)."""
        workers = max(1, min(self.threads, len(seqs) // 64))
        if not getattr(self.split, "thread_safe", False):  # e.g. learned combiners fit (and cache) on first use
            workers = 1
        if workers == 1:
            return [self._score(node) for node in self._walk_sequences(seqs)]
        bounds = np.linspace(0, len(seqs), workers + 1).astype(int)
        chunks = [seqs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(lambda c: [self._score(node) for node in self._walk_sequences(c)], chunks))
        return [x for part in parts for x in part]

    def _keep(self, members, ensemble, front, ensembles, fronts, level: list[_Scored]) -> None:
        if ensemble is not None:
            ensembles.append(ensemble)
        fronts.append(front)
        level.append(_Scored(members, front))
        self.scored_by_length[len(members)] = self.scored_by_length.get(len(members), 0) + 1

    @staticmethod
    def _add_fronts(level: list[_Scored], mean_front: Staircase, worst_front: Staircase) -> None:
        if not level:
            return
        mean_front.add(np.concatenate([s.front.mean_cost for s in level]),
                       np.concatenate([s.front.accuracy for s in level]))
        worst_front.add([s.front.worst_cost for s in level], [s.front.accuracy.max() for s in level])

    def _promising(self, s: _Scored, mean_front: Staircase, worst_front: Staircase) -> bool:
        f = s.front
        if f.accuracy.size == 0:
            return False
        parent = self._fronts.get(s.members[:-1])
        new = f.accuracy >= parent(f.mean_cost) + self.gain if parent is not None else np.ones(f.accuracy.size, bool)
        if np.any(new & (f.accuracy >= mean_front(f.mean_cost) - self.delta)):
            return True
        return bool(f.accuracy.max() >= worst_front([f.worst_cost])[0] - self.delta)

    def _insertions(self, grown: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """Every sequence one member longer that contains a grown sequence (one member inserted
        anywhere the order allows, groups respected): a good cascade whose *prefix* is poor (its
        best member comes last) still contains a good shorter cascade."""
        votes: dict[tuple[int, ...], int] = {}
        for seq in grown:
            used = {self.groups[i] for i in seq}
            for m in range(len(self.names)):
                if self.groups[m] in used:
                    continue
                if self.order == "cheapest_first":
                    cands = [tuple(sorted(seq + (m,)))]
                else:
                    cands = [seq[:j] + (m,) + seq[j:] for j in range(len(seq) + 1)]
                for c in cands:
                    votes[c] = votes.get(c, 0) + 1
        need = min(self.parents, 1 + (len(grown[0]) if grown else 0))
        return sorted(c for c, v in votes.items() if v >= need and self._affordable(c))

    def _affordable(self, seq: tuple[int, ...]) -> bool:
        """Within the budget limits (the exact pruning of :class:`PrefixWalk`)."""
        return (self.per_call + sum(self.costs[i] for i in seq) <= self.worst_limit
                and self.per_call + self.costs[seq[0]] <= self.first_limit)

    def _walk_sequences(self, seqs: list[tuple[int, ...]]) -> Iterator[_Node]:
        """The nodes of the given sequences (sorted), sharing the statistics of common prefixes."""
        stack: list[_Node] = []
        for seq in seqs:
            common = 0
            while common < min(len(stack), len(seq) - 1) and stack[common].members[-1] == seq[common]:
                common += 1
            del stack[common:]
            for index in seq[len(stack):]:
                stack.append(self._make(stack[-1] if stack else None, index))
            yield stack.pop()


def frontier_gap(reference, other, budgets: int = 400) -> dict[str, float]:
    """How much ``other`` (e.g. a guided frontier) misses against ``reference`` (exhaustive).

    Both are :class:`~.frontier.Frontier` objects over the same data, or their :meth:`table` dicts
    (only ``accuracy``, ``mean`` and ``worst`` are read). Returns, in accuracy points
    (percent) or percent of cost:

    - ``mean_budget_gap``: the largest drop of the best validation accuracy under ``budgets``
      log-spaced mean-cost budgets (from the cheapest candidate to the most expensive);
    - ``worst_budget_gap``: the same at every distinct worst-case cost of ``reference``;
    - ``target_cost_excess_pct``: the largest relative excess of the cheapest mean cost reaching an
      accuracy target, over ``budgets`` targets from the 5th percentile of the reference's front
      to the best accuracy ``other`` reaches.
    """
    ta = reference.table() if hasattr(reference, "table") else reference
    tb = other.table() if hasattr(other, "table") else other
    ref_mean, oth_mean = Staircase(), Staircase()
    ref_mean.add(ta["mean"], ta["accuracy"])
    oth_mean.add(tb["mean"], tb["accuracy"])
    grid = np.geomspace(ta["mean"].min(), ta["mean"].max(), budgets)
    mean_gap = float(np.max(ref_mean(grid) - oth_mean(grid)))
    ref_worst, oth_worst = Staircase(), Staircase()
    ref_worst.add(ta["worst"], ta["accuracy"])
    oth_worst.add(tb["worst"], tb["accuracy"])
    w = np.unique(ta["worst"])
    worst_gap = float(np.max(ref_worst(w) - oth_worst(w)))
    lo = np.percentile(ref_mean.acc, 5)
    targets = np.linspace(lo, min(ref_mean.acc.max(), oth_mean.acc.max()), budgets)
    excess = _cheapest(oth_mean, targets) / _cheapest(ref_mean, targets) - 1.0
    return {
        "mean_budget_gap": 100 * mean_gap,
        "worst_budget_gap": 100 * worst_gap,
        "target_cost_excess_pct": 100 * float(np.max(excess)),
    }


def _cheapest(front: Staircase, targets: np.ndarray) -> np.ndarray:
    """Cheapest cost reaching each accuracy target on a staircase (accuracy increases with cost)."""
    i = np.searchsorted(front.acc, targets, side="left")
    return front.cost[np.minimum(i, front.acc.size - 1)]
