"""Compact member outputs for many classes: k candidate classes per sample instead of C, exact.

At 1,000 classes, 50 members x 50,000 validation samples are 10 GB of float32 softmax; the search
needs far less. With the max-probability confidence, a prefix's statistics (:class:`.stats.StageStats`:
confidence of the running mean, its argmax, correctness) depend only on the classes that can be the
argmax of the sum of the probabilities of at most L members (L = ``max_len``).
:class:`CompactOutputs` keeps, per sample i, one sorted set ``T_i`` of ``k`` classes shared by all
members and every member's float32 softmax on them: M x N x k instead of M x N x C.

**Exactness (a proof).** Let ``t_m`` be member m's largest probability on the sample (members with
non-finite logits contribute nothing and are left out). For a prefix S of at most L members, the
class ``a_m`` = argmax of member m gives ``sum_S p_c(argmax) >= sum_S p_{a_m} >= t_m`` for every m in
S, so a class c can be the argmax of the sum only if ``sum_{m in S} p_m,c >= max_{m in S} t_m``,
which needs ``p_m,c >= t_m / |S| >= t_m / L`` for some m in S. ``T_i`` holds every class with
``p_m,c >= (1 - 1e-5) t_m / L`` for some member (the 1e-5 margin exceeds the float32 rounding of a
sum of L probabilities and keeps excluded classes out of ties), padded with the next most probable
classes to k. The sums over ``T_i`` are the same float32 operations in the same order as the full
computation (:meth:`.stats.SplitOutputs.extend`) and ``T_i`` is sorted by class index (ties go to
the lowest class, as in the reference), so confidence, label and correctness are **bit-identical**
to the full computation (the tests check it). Samples with more than k candidate classes
(``fallback``) keep their full rows.

The pass over the logits goes in chunks of samples and releases the pages of memory-mapped logits
after each chunk, so peak memory is O(M N k + M F C + M chunk C) (F fallback samples), never
M N C. Only the ``"max_prob"`` confidence: margin and entropy need more than the argmax class.
"""

from __future__ import annotations

import mmap
from collections.abc import Mapping, Sequence

import numpy as np

from edge_committee.cascade import reference
from edge_committee.select.stats import StageStats, max_argmax

#: Candidate classes kept per sample.
DEFAULT_K = 64
#: Relative margin of the candidate rule (see the module docstring).
MARGIN = 1e-5
#: Samples per chunk of the compaction pass.
CHUNK = 1_000


def release_pages(x: object) -> None:
    """Drop the resident pages of a memory-mapped array from this process (they stay in the page
    cache); no-op for ordinary arrays."""
    base = x
    for _ in range(8):
        if isinstance(base, mmap.mmap):
            if hasattr(mmap, "MADV_DONTNEED"):
                try:
                    base.madvise(mmap.MADV_DONTNEED)
                except (OSError, ValueError):
                    pass
            return
        base = getattr(base, "_mmap", None) or getattr(base, "base", None)
        if base is None:
            return


def _softmax(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """:meth:`.stats.SplitOutputs.probs` on a block of rows (row-wise, so bit-identical)."""
    return np.where(ok[:, None], reference.softmax(np.where(ok[:, None], x, 0)), np.float32(0))


class CompactOutputs:
    """Stand-in for :class:`.stats.SplitOutputs` (``extend``, ``sequence``, ``num_samples``) with
    k candidate classes per sample, exact for prefixes of at most ``max_len`` members (module
    docstring). ``fallback`` is the number of samples kept in full."""

    #: :meth:`extend` only reads shared state: the guided search may call it from several threads
    thread_safe = True

    def __init__(self, logits: Mapping[str, np.ndarray], target: np.ndarray | None, kind: str,
                 max_len: int, k: int = DEFAULT_K, chunk: int = CHUNK):
        if kind != "max_prob":
            raise ValueError(f"compact outputs support the max_prob confidence only, not {kind!r}")
        self.kind = kind
        self.names = list(logits)
        first = logits[self.names[0]]
        self.num_samples, self.num_classes = first.shape
        self.k = int(min(max(k, 1), self.num_classes))
        self.max_len = int(max_len)
        self.target = None if target is None else np.asarray(target, np.int64)
        n, m = self.num_samples, len(self.names)
        self.classes = np.zeros((n, self.k), np.int32)  # T_i, sorted
        self.values = {name: np.zeros((n, self.k), np.float32) for name in self.names}
        self.ok = {name: np.zeros(n, bool) for name in self.names}
        full_rows: list[np.ndarray] = []
        full_vals: dict[str, list[np.ndarray]] = {name: [] for name in self.names}
        for lo in range(0, n, max(int(chunk), 1)):
            hi = min(lo + chunk, n)
            probs = np.empty((m, hi - lo, self.num_classes), np.float32)
            for j, name in enumerate(self.names):
                x = np.asarray(logits[name][lo:hi])
                ok = reference.finite_rows(x)
                self.ok[name][lo:hi] = ok
                probs[j] = _softmax(x, ok)
                release_pages(logits[name])
            okm = np.stack([self.ok[name][lo:hi] for name in self.names])  # (M, n)
            t = probs.max(axis=2)  # (M, n)
            bar = (t * np.float32((1 - MARGIN) / self.max_len))[:, :, None]
            cand = ((probs >= bar) & okm[:, :, None]).any(axis=0)  # (n, C): may be an argmax
            key = probs.max(axis=0) + cand  # candidates first, then the most probable classes
            top = np.sort(np.argpartition(-key, self.k - 1, axis=1)[:, : self.k], axis=1)
            rows = np.arange(hi - lo)[:, None]
            self.classes[lo:hi] = top
            inside = probs[:, rows, top]  # (M, n, k)
            safe = cand.sum(axis=1) <= self.k
            bad = np.flatnonzero(~safe)
            for j, name in enumerate(self.names):
                self.values[name][lo:hi] = inside[j]
                if bad.size:
                    full_vals[name].append(probs[j, bad])
            if bad.size:
                full_rows.append(bad + lo)
            del probs, inside
        self.fallback_rows = np.concatenate(full_rows) if full_rows else np.zeros(0, np.int64)
        self.full = {name: (np.concatenate(v) if v else np.zeros((0, self.num_classes), np.float32))
                     for name, v in full_vals.items()}
        self.fallback = int(self.fallback_rows.size)

    @property
    def nbytes(self) -> int:
        """Bytes held for the member outputs."""
        return int(self.classes.nbytes + sum(v.nbytes for v in self.values.values())
                   + sum(v.nbytes for v in self.full.values()))

    def extend(self, prev: StageStats | None, name: str, stage: int) -> StageStats:
        """As :meth:`.stats.SplitOutputs.extend`; ``prob_sum`` is the pair (compact (N, k), full (F, C))."""
        ok = self.ok[name]
        fb = self.fallback_rows
        if prev is None:
            sums = (self.values[name], self.full[name])
            contributed = ok
            count = ok.astype(np.float32)
            means = sums
        else:
            sums = (prev.prob_sum[0] + self.values[name], prev.prob_sum[1] + self.full[name])
            contributed = prev.contributed | ok
            count = prev.count + ok
            div = np.maximum(count, np.float32(1))
            means = (np.divide(sums[0], div[:, None]), np.divide(sums[1], div[fb][:, None]))
        conf, arg = max_argmax(means[0])
        label = np.take_along_axis(self.classes, arg[:, None], axis=1)[:, 0]
        if fb.size:
            conf[fb], label[fb] = max_argmax(means[1])
        label = np.where(contributed, label, -1).astype(np.int64)
        correct = np.zeros(self.num_samples, bool) if self.target is None else label == self.target
        return StageStats(sums, conf, ok, label, contributed, correct, count)

    def sequence(self, names: Sequence[str]) -> list[StageStats]:
        """The states after each stage of the member sequence ``names``."""
        out: list[StageStats] = []
        for k, name in enumerate(names):
            out.append(self.extend(out[-1] if out else None, name, k))
        return out
