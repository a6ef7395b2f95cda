"""The cascade semantics, once, in NumPy: the reference every kernel is tested against.

A cascade runs members ``0..K-1`` in order. After member ``k`` the prediction of a sample is
the mean of the softmax probabilities of the members ``0..k`` that gave it finite logits; its
confidence is a function of that mean (see :data:`CONFIDENCE_FUNCTIONS`); the sample exits when
the confidence is at least ``thresholds[k]``; the last member always exits.

The per-stage step (:func:`gate_step`) is what the fused C++/CUDA gate implements:

1. softmax of member ``k``'s logits (computed in float32, inputs may be float16),
2. add to the running probability sum ``prob_sum`` of each *active* sample,
3. confidence of the running mean ``prob_sum / n``, where ``n`` is the number of stages that
   contributed to the sample (:func:`contributions`: ``round(sum(prob_sum row))``, at least 1),
4. exit if confidence >= ``t_k`` or ``k`` is the last stage,
5. for exiting samples write label (argmax of the mean; ties to the lowest class index),
   confidence and exit stage,
6. compact the original indices of the samples that continue, keeping their order.

Non-finite logits: a row with any NaN or +-Inf logit is *flagged*. Its probabilities are not
added to ``prob_sum`` (the stage contributes nothing for that sample, and is not counted in the
mean's divisor), it never exits early at that stage, and its flag stays set. If it reaches the
last stage it exits like any other sample; if no stage ever contributed (``prob_sum`` is all
zeros) its label is ``-1`` and its confidence ``NaN``.

Counting contributions needs no extra state: each contributing stage adds one softmax row,
which sums to 1 (to within float32 rounding), so ``round(sum(prob_sum row))`` is exactly the
number of stages that contributed. The C++ and CUDA gates, the ONNX gate and the selection
statistics divide by the same count.

Confidence functions (all "higher is more confident"):

- ``max_prob``: the largest probability, in [1/C, 1].
- ``margin``: largest minus second largest probability, in [0, 1].
- ``neg_entropy``: ``sum(p * log p)`` with ``0 log 0 = 0``, in [-log C, 0].
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

CONFIDENCE_FUNCTIONS = ("max_prob", "margin", "neg_entropy")

#: Integer codes used by the C++/CUDA gate and the ONNX node attribute ``confidence``.
CONFIDENCE_CODES = {name: code for code, name in enumerate(CONFIDENCE_FUNCTIONS)}


def check_confidence_name(name: str) -> str:
    """Return ``name`` if it is a known confidence function, else raise ValueError naming them."""
    if name not in CONFIDENCE_FUNCTIONS:
        raise ValueError(
            f"unknown confidence function {name!r}; expected one of {', '.join(CONFIDENCE_FUNCTIONS)}"
        )
    return name


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (max-subtracted). ``logits``: (N, C) float16/32/64."""
    x = np.asarray(logits, dtype=np.float32)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def confidence(probs: np.ndarray, kind: str = "max_prob") -> np.ndarray:
    """Confidence of each row of ``probs`` (N, C) -> (N,) float32."""
    check_confidence_name(kind)
    p = np.asarray(probs, dtype=np.float32)
    if kind == "max_prob":
        return p.max(axis=-1)
    if kind == "margin":
        if p.shape[-1] < 2:
            return p.max(axis=-1)
        top2 = np.partition(p, p.shape[-1] - 2, axis=-1)[..., -2:]
        return (top2[..., 1] - top2[..., 0]).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return plogp.sum(axis=-1).astype(np.float32)


def finite_rows(logits: np.ndarray) -> np.ndarray:
    """(N,) bool: True where every logit of the row is finite."""
    return np.isfinite(np.asarray(logits)).all(axis=-1)


def contributions(prob_sum: np.ndarray) -> np.ndarray:
    """(N,) float32: stages that contributed to each row of ``prob_sum`` (N, C), at least 1.

    Each contributing stage added one softmax row (sum 1), so the count is the rounded row sum;
    0 contributions are counted as 1, so the mean of an all-zero row stays zero.
    """
    total = np.asarray(prob_sum, np.float32).sum(axis=-1, dtype=np.float64)
    return np.maximum(np.rint(total), 1.0).astype(np.float32)


@dataclasses.dataclass
class GateState:
    """The state a cascade carries between stages, indexed by the *original* sample index.

    Attributes:
        prob_sum: (N, C) float32 running sum of member probabilities.
        label: (N,) int32 final label, -1 until the sample exits.
        conf: (N,) float32 final confidence, NaN until the sample exits.
        exit_stage: (N,) int32 stage (0-based) at which the sample exited, -1 until then.
        flag: (N,) int32, 1 if any stage produced non-finite logits for the sample.
        active: (M,) int32 original indices of the samples still running, in order.
    """

    prob_sum: np.ndarray
    label: np.ndarray
    conf: np.ndarray
    exit_stage: np.ndarray
    flag: np.ndarray
    active: np.ndarray

    @classmethod
    def start(cls, num_samples: int, num_classes: int) -> "GateState":
        return cls(
            prob_sum=np.zeros((num_samples, num_classes), np.float32),
            label=np.full(num_samples, -1, np.int32),
            conf=np.full(num_samples, np.nan, np.float32),
            exit_stage=np.full(num_samples, -1, np.int32),
            flag=np.zeros(num_samples, np.int32),
            active=np.arange(num_samples, dtype=np.int32),
        )

    def mean_probs(self, stages_run: np.ndarray | int | None = None) -> np.ndarray:
        """(N, C) mean probabilities over the stages that contributed to each sample.

        ``stages_run`` is accepted for callers of the former signature and not used: a stage
        with non-finite logits runs but does not count (see :func:`contributions`).
        """
        return self.prob_sum / contributions(self.prob_sum)[:, None]


def gate_step(
    state: GateState,
    logits: np.ndarray,
    stage: int,
    num_stages: int,
    threshold: float,
    kind: str = "max_prob",
) -> GateState:
    """Apply member ``stage``'s logits (M, C) for the samples ``state.active`` (M,), in place.

    Returns ``state`` with the exiting samples written and ``state.active`` compacted to the
    survivors. ``threshold`` is ignored at the last stage (everything exits).
    """
    logits = np.asarray(logits)
    idx = state.active
    if logits.shape != (idx.shape[0], state.prob_sum.shape[1]):
        raise ValueError(
            f"stage {stage}: logits have shape {logits.shape}, expected "
            f"({idx.shape[0]}, {state.prob_sum.shape[1]}) for the active samples"
        )
    ok = finite_rows(logits)
    probs = softmax(np.where(ok[:, None], logits, 0))
    state.prob_sum[idx[ok]] += probs[ok]
    state.flag[idx[~ok]] = 1
    rows = state.prob_sum[idx]
    mean = rows / contributions(rows)[:, None]
    conf = confidence(mean, kind)
    last = stage == num_stages - 1
    exits = np.ones(idx.shape[0], bool) if last else (ok & (conf >= np.float32(threshold)))
    out = idx[exits]
    empty = state.prob_sum[out].sum(axis=-1) <= 0
    state.label[out] = np.where(empty, -1, mean[exits].argmax(axis=-1)).astype(np.int32)
    state.conf[out] = np.where(empty, np.float32(np.nan), conf[exits])
    state.exit_stage[out] = stage
    state.active = idx[~exits].astype(np.int32)
    return state


@dataclasses.dataclass
class CascadeResult:
    """What a cascade predicts for each sample (N samples, C classes)."""

    label: np.ndarray  #: (N,) int32
    probs: np.ndarray  #: (N, C) float32 mean probabilities at the exit stage
    confidence: np.ndarray  #: (N,) float32
    exit_stage: np.ndarray  #: (N,) int32, 0-based
    flag: np.ndarray  #: (N,) int32, 1 where some member gave non-finite logits


def _check_thresholds(thresholds: Sequence[float], num_stages: int) -> list[float]:
    t = [float(x) for x in thresholds]
    if len(t) not in (num_stages - 1, num_stages):
        raise ValueError(
            f"{num_stages} stages need {num_stages - 1} thresholds (one per stage but the last); "
            f"got {len(t)}"
        )
    return t + [float("inf")] * (num_stages - len(t))


def run_cascade(
    member_logits: Sequence[np.ndarray],
    thresholds: Sequence[float],
    kind: str = "max_prob",
    gate=gate_step,
) -> CascadeResult:
    """Run a cascade over precomputed logits of every member for every sample.

    ``member_logits[k]`` is (N, C) for all N samples; each stage reads only the rows of the
    samples still active, exactly as the runtime does. ``gate``: the gate step (default
    :func:`gate_step`; a gate object with a ``start(N, C)`` makes its own state, as the host loop
    does).
    """
    check_confidence_name(kind)
    if not member_logits:
        raise ValueError("a cascade needs at least one member")
    k_total = len(member_logits)
    t = _check_thresholds(thresholds, k_total)
    n, c = np.asarray(member_logits[0]).shape
    state = getattr(gate, "start", GateState.start)(n, c)
    for k, logits in enumerate(member_logits):
        if state.active.size == 0:
            break
        gate(state, np.asarray(logits)[state.active], k, k_total, t[k], kind)
    return CascadeResult(
        label=state.label,
        probs=state.mean_probs(),
        confidence=state.conf,
        exit_stage=state.exit_stage,
        flag=state.flag,
    )


def ensemble(member_logits: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of the members' softmax probabilities, (N, C)."""
    return np.mean([softmax(x) for x in member_logits], axis=0).astype(np.float32)


@dataclasses.dataclass
class CascadeEvaluation:
    """Accuracy and cost of one cascade on one labelled split.

    Costs are in the unit of ``costs`` (MACs by default); ``worst_cost`` is the sum over all
    members, ``mean_cost`` the expectation over the split, both including ``stage_overhead``
    per executed stage.
    """

    accuracy: float
    mean_cost: float
    worst_cost: float
    exit_histogram: list[int]  #: samples exiting at each stage

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate_cascade(
    member_logits: Sequence[np.ndarray],
    labels: np.ndarray,
    thresholds: Sequence[float],
    costs: Sequence[float],
    kind: str = "max_prob",
    stage_overhead: float = 0.0,
) -> CascadeEvaluation:
    """Accuracy, mean and worst-case cost, and exits per stage of a cascade on one split."""
    if len(costs) != len(member_logits):
        raise ValueError(f"got {len(costs)} costs for {len(member_logits)} members")
    res = run_cascade(member_logits, thresholds, kind)
    per_stage = np.cumsum(np.asarray(costs, np.float64) + stage_overhead)
    hist = np.bincount(res.exit_stage, minlength=len(member_logits))
    return CascadeEvaluation(
        accuracy=float(np.mean(res.label == np.asarray(labels))),
        mean_cost=float(per_stage[res.exit_stage].mean()),
        worst_cost=float(per_stage[-1]),
        exit_histogram=[int(x) for x in hist],
    )
