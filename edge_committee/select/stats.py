"""Per-sample stage statistics of member sequences, bit-identical to the NumPy reference.

For a member sequence ``(m_0, ..., m_k)`` the state after stage ``k`` — the running probability
sum, the confidence of the running mean, the predicted label and whether it is correct — depends
only on that prefix, so :meth:`SplitOutputs.extend` derives it from the state of ``(m_0..m_{k-1})``
in O(N*C). Selection computes each prefix once and shares it across every sequence that starts
with it.

The arithmetic follows :func:`edge_committee.cascade.reference.gate_step` step by step (float32
softmax of the finite rows, float32 running sum, mean = sum / n with n the stages whose logits were
finite (at least 1; the reference's rounded row sum, counted here), confidence of the mean,
argmax with ties to the lowest class, label -1 when no stage contributed), so confidences and
labels are bit-identical to :func:`~edge_committee.cascade.reference.run_cascade`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from edge_committee.cascade import reference


#: Softmax outputs kept in memory per split (bytes); the rest are recomputed when needed.
CACHE_BYTES = 2 << 30


@dataclasses.dataclass
class StageStats:
    """State of every sample after the last stage of a member prefix (N samples, C classes)."""

    prob_sum: np.ndarray  #: (N, C) float32 running sum of member probabilities
    conf: np.ndarray  #: (N,) float32 confidence of the running mean
    ok: np.ndarray  #: (N,) bool, the stage's logits were finite (the sample may exit here)
    label: np.ndarray  #: (N,) int64 prediction of the running mean, -1 if nothing contributed
    contributed: np.ndarray  #: (N,) bool, some stage so far had finite logits for the sample
    correct: np.ndarray  #: (N,) bool, label == target (true label or reference label)
    count: np.ndarray | None = None  #: (N,) float32 stages so far with finite logits (the mean's divisor)


def native(name: str):
    """A selection kernel of the extension (plugins/python/selectBindings.cpp), or None without it."""
    from edge_committee.gate import _ext

    module = _ext.load()
    return getattr(module, name, None) if module is not None else None


def max_argmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x.max(axis=-1), x.argmax(axis=-1))`` of an (N, C) float32 array, in one pass with the
    extension (NumPy's reductions over a short last axis are slow), else NumPy."""
    fn = native("select_max_argmax") if x.dtype == np.float32 and x.ndim == 2 and x.shape[1] else None
    if fn is None:
        return x.max(axis=-1), x.argmax(axis=-1)
    return fn(x)


class SplitOutputs:
    """The members' softmax outputs on one split, computed once, and the target labels.

    Args:
        logits: member name -> (N, C) logits.
        target: (N,) labels that count as correct (true labels, or the reference's labels in
            label-free mode); ``None`` makes every ``correct`` False.
        kind: confidence function name (see :data:`reference.CONFIDENCE_FUNCTIONS`).
    """

    #: :meth:`extend` may run in several threads at once (the guided search's chunks)
    thread_safe = True

    def __init__(self, logits: Mapping[str, np.ndarray], target: np.ndarray | None, kind: str,
                 cache_bytes: int = CACHE_BYTES):
        reference.check_confidence_name(kind)
        self.kind = kind
        self.logits = logits  # may be memory-mapped: read one member at a time
        self.ok = {n: reference.finite_rows(x) for n, x in logits.items()}
        self._probs: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_bytes = int(cache_bytes)
        first = next(iter(logits.values()))
        self.num_samples, self.num_classes = first.shape
        self._scratch = threading.local()  # per thread: the running mean's buffer
        self._lock = threading.Lock()  # guards the softmax cache (the guided search scores in threads)
        self.target = None if target is None else np.asarray(target, np.int64)

    def probs(self, name: str) -> np.ndarray:
        """(N, C) float32 softmax of a member, computed on first use and kept while the softmaxes
        kept fit in ``cache_bytes`` (least recently used dropped first): at 1,000 classes 50
        members x 50,000 samples would be 10 GB."""
        with self._lock:
            p = self._probs.get(name)
            if p is not None:
                self._probs.move_to_end(name)
                return p
        ok = self.ok[name][:, None]
        # rows with non-finite logits contribute nothing (exact zeros), as in the reference
        x = np.asarray(self.logits[name])
        p = np.where(ok, reference.softmax(np.where(ok, x, 0)), np.float32(0))
        with self._lock:
            while self._probs and (len(self._probs) + 1) * p.nbytes > self._cache_bytes:
                self._probs.popitem(last=False)
            if p.nbytes <= self._cache_bytes:
                self._probs[name] = p
        return p

    def extend(self, prev: StageStats | None, name: str, stage: int) -> StageStats:
        """The state after appending member ``name`` as stage ``stage`` (0-based) to ``prev``."""
        ok = self.ok[name]
        if prev is None:
            prob_sum, contributed = self.probs(name), ok  # 0 + p = p and p / 1 = p exactly
            count = ok.astype(np.float32)
            mean = prob_sum
        else:
            prob_sum, contributed = prev.prob_sum + self.probs(name), prev.contributed | ok
            # stages with non-finite logits do not count: the reference's contributions(prob_sum)
            count = prev.count + ok
            scratch = getattr(self._scratch, "mean", None)
            if scratch is None or scratch.shape != prob_sum.shape:
                scratch = self._scratch.mean = np.empty(prob_sum.shape, np.float32)
            mean = np.divide(prob_sum, np.maximum(count, np.float32(1))[:, None], out=scratch)
        top, arg = max_argmax(mean)
        conf = top if self.kind == "max_prob" else reference.confidence(mean, self.kind)
        # a sum of softmax rows is > 0 exactly when some stage contributed (the reference's test)
        label = np.where(contributed, arg, -1).astype(np.int64)
        correct = np.zeros(self.num_samples, bool) if self.target is None else label == self.target
        return StageStats(prob_sum, conf, ok, label, contributed, correct, count)

    def sequence(self, names: Sequence[str]) -> list[StageStats]:
        """The states after each stage of the member sequence ``names``."""
        out: list[StageStats] = []
        for k, name in enumerate(names):
            out.append(self.extend(out[-1] if out else None, name, k))
        return out


def exit_stages(stats: Sequence[StageStats], thresholds: np.ndarray) -> np.ndarray:
    """Exit stage of every sample for each threshold vector.

    ``thresholds``: (P, K-1) thresholds of P cascades over the same K members (``stats`` has K
    entries). Returns (P, N) int64 0-based exit stages with the reference semantics: exit at the
    first stage whose logits were finite and whose confidence is >= the threshold (float32
    comparison); the last stage always exits.
    """
    thr = np.atleast_2d(np.asarray(thresholds, np.float64)).astype(np.float32)
    k_total = len(stats)
    p, n = thr.shape[0], stats[0].conf.shape[0]
    stage = np.full((p, n), k_total - 1, np.int64)
    pending = np.ones((p, n), bool)
    for k in range(k_total - 1):
        exits = pending & stats[k].ok[None, :] & (stats[k].conf[None, :] >= thr[:, k : k + 1])
        stage[exits] = k
        pending &= ~exits
    return stage


def score_exits(stats: Sequence[StageStats], stage: np.ndarray) -> np.ndarray:
    """(P,) fraction correct given (P, N) exit stages from :func:`exit_stages`."""
    correct = np.stack([s.correct for s in stats])  # (K, N)
    n = correct.shape[1]
    picked = np.take_along_axis(correct, stage.reshape(-1, n), axis=0)  # (P, N)
    return picked.mean(axis=1) if n else np.zeros(picked.shape[0])


def stage_costs(member_costs: Sequence[float], stage_overhead: float) -> np.ndarray:
    """(K,) cumulative cost after each stage: sum of member costs plus one overhead per stage."""
    return np.cumsum(np.asarray(member_costs, np.float64) + float(stage_overhead))
