"""The learned combination of a committee, in NumPy: the reference its runtimes are tested against.

The plain committee averages its members' probabilities (:mod:`.reference`). A *learned*
combiner replaces the average by a small layer fitted on the validation split ("Efficient
Adaptive Ensembling", Bruno et al. 2023; post-hoc learned deferral, Jitkrittum et al. 2023):

    z_c = b_c + sum_m W[m, c] * log_softmax(x_m)_c        probs = softmax(z)

per-class weights ``W`` (M, C) over the members' log-probabilities and a bias ``b`` (C,), i.e.
``(M + 1) * C`` numbers (a per-class, per-member temperature). Fitted by minimising the
cross-entropy on labelled samples (plus a small L2 pull towards ``W = 1/M, b = 0``, the
normalised geometric mean) it is also a calibration: its probabilities, and so its confidence,
are those of a model fitted for log-loss.

**Cascades.** Stage ``k`` of a learned cascade decides with its own combiner over members
``0..k`` (a prefix combiner; stage 0 is member 0 recalibrated), so the state keeps the
members' log-probabilities of every active sample (:class:`LearnedGateState`), and the
confidence of stage ``k`` is that of the stage-``k`` combination. :func:`learned_gate_step` has
the contract of :func:`.reference.gate_step`: it updates the state of the active samples in
place, writes label, confidence and exit stage of those that exit and compacts the survivors.

**Non-finite logits** follow the reference: a row with a NaN or +-Inf logit is flagged, adds
nothing (its log-probabilities count as 0 in every later combination), never exits at that
stage; a sample no stage contributed to ends with label -1, confidence NaN and zero probs.

**Cross-fitting.** A combiner scored on the samples it was fitted on overstates its accuracy.
:func:`cross_fit` splits the samples into ``folds`` parts, fits on all parts but one and
predicts that one: the out-of-fold probabilities are what selection scores and thresholds;
the combiner deployed is then fitted on every sample.

The arithmetic of a combination (:func:`combine_log_probs`) is elementwise per row in float32,
so the selection statistics over whole splits and the per-stage gate over compacted subsets give
bit-identical probabilities.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from edge_committee.cascade.reference import (
    CascadeResult,
    GateState,
    confidence,
    finite_rows,
    run_cascade,
    softmax,
)

#: The combiner's form, recorded in manifests and ONNX metadata.
FORM = "per_class_log_prob"
DEFAULT_FOLDS = 5
DEFAULT_L2 = 1e-3


def log_probs(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log_softmax (N, C) float32 with non-finite rows set to 0, finite-row mask (N,) bool)."""
    x = np.asarray(logits, dtype=np.float32)
    ok = finite_rows(x)
    x = np.where(ok[:, None], x, np.float32(0))
    x = x - x.max(axis=-1, keepdims=True)
    lp = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return np.where(ok[:, None], lp, np.float32(0)).astype(np.float32, copy=False), ok


@dataclasses.dataclass(frozen=True)
class Combiner:
    """One learned combination of M members: ``softmax(bias + sum_m weights[m] * log_probs_m)``.

    Attributes:
        weights: (M, C) float32 per-member, per-class weights, in the members' order.
        bias: (C,) float32.
        members: the members' names in order (informational; may be empty).
    """

    weights: np.ndarray
    bias: np.ndarray
    members: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, np.float32)
        b = np.asarray(self.bias, np.float32)
        if w.ndim != 2 or b.shape != (w.shape[1],):
            raise ValueError(f"combiner weights {w.shape} and bias {b.shape} must be (M, C) and (C,)")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "members", tuple(self.members))

    @property
    def num_members(self) -> int:
        return self.weights.shape[0]

    @property
    def num_classes(self) -> int:
        return self.weights.shape[1]

    def probs(self, member_logits: Sequence[np.ndarray]) -> np.ndarray:
        """(N, C) float32 combined probabilities from the members' logits, in order."""
        return combine(self, member_logits)

    def to_dict(self) -> dict:
        return {"form": FORM, "members": list(self.members), "weights": self.weights.tolist(),
                "bias": self.bias.tolist()}


def combine_log_probs(combiner: Combiner, lps: Sequence[np.ndarray]) -> np.ndarray:
    """(N, C) float32 combined probabilities from the members' log-probabilities, in order.

    Elementwise per row (no matrix product), so any subset of rows gives the same bits.
    """
    if len(lps) != combiner.num_members:
        raise ValueError(f"the combiner has {combiner.num_members} members, got {len(lps)} inputs")
    z = np.broadcast_to(combiner.bias, np.shape(lps[0])).astype(np.float32)
    for w, lp in zip(combiner.weights, lps):
        z = z + w * lp
    return softmax(z)


def combine(combiner: Combiner, member_logits: Sequence[np.ndarray]) -> np.ndarray:
    """(N, C) float32 combined probabilities from the members' logits (the prefix 0..M-1)."""
    return combine_log_probs(combiner, [log_probs(x)[0] for x in member_logits])


# ---------------------------------------------------------------------------------- fitting
def _objective(theta: np.ndarray, lps: np.ndarray, onehot: np.ndarray, prior: np.ndarray, l2: float):
    """Mean cross-entropy + L2 pull to ``prior``, and its gradient.

    ``lps``: (M, C, N) float32 log-probabilities, ``onehot``: (C, N) float32 labels. Classes
    lie on the first axis because NumPy reduces short rows slowly: every reduction over C is
    then an elementwise operation between N-long rows.
    """
    m, c, n = lps.shape
    w = theta[: m * c].reshape(m, c).astype(np.float32)
    b = theta[m * c :].astype(np.float32)
    z = b[:, None] + np.einsum("mcn,mc->cn", lps, w)
    z -= z.max(axis=0)
    e = np.exp(z)
    s = e.sum(axis=0)
    loss = float(np.mean(np.log(s, dtype=np.float64)) - np.sum(z * onehot, dtype=np.float64) / n)
    g = (e / s - onehot) / np.float32(n)
    dw, db = theta[: m * c].reshape(m, c) - prior, theta[m * c :]
    loss += 0.5 * l2 * float((dw * dw).sum() + (db * db).sum())
    grad_w = np.einsum("mcn,cn->mc", lps, g) + l2 * dw
    grad_b = g.sum(axis=1, dtype=np.float64) + l2 * db
    return loss, np.concatenate([grad_w.ravel(), grad_b])


def _one_blas_thread():
    """One BLAS thread while L-BFGS runs: its tiny vector operations otherwise wake every BLAS
    thread per call, which made fits 4x slower on a busy 2-core machine."""
    from edge_committee._util import blas_single_thread

    return blas_single_thread()


def fit(
    member_logits: Sequence[np.ndarray],
    labels: np.ndarray,
    l2: float = DEFAULT_L2,
    init: Combiner | None = None,
    max_iter: int = 200,
    members: Sequence[str] = (),
) -> Combiner:
    """Fit a :class:`Combiner` on labelled samples (L-BFGS, deterministic).

    Args:
        member_logits: M arrays (N, C), the members in the order the combiner will take them.
        labels: (N,) int class indices.
        l2: strength of the pull towards ``W = 1/M, b = 0`` (default 1e-3).
        init: start point (default: that prior).
        max_iter: L-BFGS iterations (default 200).
        members: names to record.
    """
    from edge_committee._lazy import require

    optimize = require("scipy.optimize")
    lps = np.ascontiguousarray(np.stack([log_probs(x)[0].T for x in member_logits]))  # (M, C, N)
    m, c, n = lps.shape
    y = np.asarray(labels, np.int64)
    onehot = np.zeros((c, n), np.float32)
    onehot[y, np.arange(n)] = 1.0
    prior = np.full((m, c), 1.0 / m)
    x0 = (np.concatenate([prior.ravel(), np.zeros(c)]) if init is None
          else np.concatenate([init.weights.ravel(), init.bias]).astype(np.float64))
    with _one_blas_thread():
        res = optimize.minimize(_objective, x0, args=(lps, onehot, prior, float(l2)), jac=True,
                                method="L-BFGS-B", options={"maxiter": max_iter, "gtol": 1e-5})
    return Combiner(res.x[: m * c].reshape(m, c), res.x[m * c :], tuple(members))


def fold_ids(n: int, folds: int = DEFAULT_FOLDS, seed: int = 0) -> np.ndarray:
    """(n,) fold index of each sample: a seeded permutation dealt round-robin into ``folds``."""
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    out = np.empty(n, np.int64)
    out[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    return out


@dataclasses.dataclass
class CrossFit:
    """Cross-fitted combination of one member prefix on one labelled split.

    Attributes:
        combiner: fitted on every sample (the one deployed).
        fold_combiners: one per fold, each fitted without that fold.
        folds: (N,) fold index of each sample.
    """

    combiner: Combiner
    fold_combiners: list[Combiner]
    folds: np.ndarray

    def oof_log_probs_combined(self, lps: Sequence[np.ndarray]) -> np.ndarray:
        """(N, C) out-of-fold probabilities: each sample combined by the fit that never saw it."""
        out = np.empty(np.shape(lps[0]), np.float32)
        for f, comb in enumerate(self.fold_combiners):
            rows = self.folds == f
            out[rows] = combine_log_probs(comb, [lp[rows] for lp in lps])
        return out

    def oof_probs(self, member_logits: Sequence[np.ndarray]) -> np.ndarray:
        return self.oof_log_probs_combined([log_probs(x)[0] for x in member_logits])


def cross_fit(
    member_logits: Sequence[np.ndarray],
    labels: np.ndarray,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    l2: float = DEFAULT_L2,
    members: Sequence[str] = (),
    init: CrossFit | None = None,
) -> CrossFit:
    """Fit per fold (for out-of-fold probabilities) and on everything (to deploy).

    ``init``: a cross-fit of a prefix of these members to start the full fit from (the new
    members' weights start at the prior); each fold's fit starts from the full fit. Starting
    points change where L-BFGS stops by at most its tolerance, not the optimum (the objective
    is convex).
    """
    n = np.asarray(labels).shape[0]
    ids = fold_ids(n, folds, seed)
    y = np.asarray(labels, np.int64)
    m = len(member_logits)

    def start(prev: Combiner | None) -> Combiner | None:
        if prev is None:
            return None
        extra = np.full((m - prev.num_members, prev.num_classes), 1.0 / m, np.float32)
        return Combiner(np.concatenate([prev.weights, extra]), prev.bias)

    # the full fit first: each fold's fit starts from it and needs only a few iterations
    full = fit(member_logits, y, l2, start(init.combiner if init is not None else None), members=members)
    per_fold = []
    for f in range(folds):
        train = ids != f
        per_fold.append(fit([x[train] for x in member_logits], y[train], l2, full, members=members))
    return CrossFit(full, per_fold, ids)


# ---------------------------------------------------------------------------------- the gate
@dataclasses.dataclass
class LearnedGateState(GateState):
    """:class:`.reference.GateState` plus what a learned cascade needs between stages.

    ``prob_sum`` holds each sample's *combined* probabilities at the last stage it ran (not a
    sum), so :meth:`mean_probs` returns the exit probabilities. ``log_probs[k]`` (N, C) holds
    member ``k``'s log-probabilities of the samples that ran stage ``k`` (0 elsewhere and for
    non-finite rows); ``contributed`` (N,) counts the stages with finite logits.
    """

    log_probs: list = dataclasses.field(default_factory=list)
    contributed: np.ndarray | None = None

    @classmethod
    def start(cls, num_samples: int, num_classes: int) -> LearnedGateState:
        base = GateState.start(num_samples, num_classes)
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(GateState)}
        return cls(**fields, log_probs=[], contributed=np.zeros(num_samples, np.int32))

    def mean_probs(self, stages_run=None) -> np.ndarray:
        """(N, C) combined probabilities at each sample's exit stage (``stages_run`` is unused)."""
        return self.prob_sum.copy()


def learned_gate_step(
    state: LearnedGateState,
    logits: np.ndarray,
    stage: int,
    num_stages: int,
    threshold: float,
    kind: str,
    combiner: Combiner,
) -> LearnedGateState:
    """Apply member ``stage``'s logits (M, C) for the samples ``state.active``, in place.

    ``combiner`` is the stage's prefix combiner (``stage + 1`` members). Same contract as
    :func:`.reference.gate_step`; ``threshold`` is ignored at the last stage.
    """
    logits = np.asarray(logits)
    idx = state.active
    n, c = state.prob_sum.shape
    if logits.shape != (idx.shape[0], c):
        raise ValueError(f"stage {stage}: logits have shape {logits.shape}, expected ({idx.shape[0]}, {c})")
    if combiner.num_members != stage + 1 or combiner.num_classes != c:
        raise ValueError(f"stage {stage} needs a combiner of {stage + 1} members and {c} classes; "
                         f"got {combiner.num_members} and {combiner.num_classes}")
    if len(state.log_probs) != stage:
        raise ValueError(f"stage {stage} follows {len(state.log_probs)} stages; run the stages in order")
    lp, ok = log_probs(logits)
    state.log_probs.append(np.zeros((n, c), np.float32))
    state.log_probs[stage][idx] = lp
    state.flag[idx[~ok]] = 1
    state.contributed[idx] += ok
    probs = combine_log_probs(combiner, [x[idx] for x in state.log_probs])
    empty = state.contributed[idx] == 0
    probs[empty] = 0
    state.prob_sum[idx] = probs
    conf = confidence(probs, kind)
    last = stage == num_stages - 1
    exits = np.ones(idx.shape[0], bool) if last else (ok & (conf >= np.float32(threshold)))
    out = idx[exits]
    state.label[out] = np.where(empty[exits], -1, probs[exits].argmax(axis=-1)).astype(np.int32)
    state.conf[out] = np.where(empty[exits], np.float32(np.nan), conf[exits])
    state.exit_stage[out] = stage
    state.active = idx[~exits].astype(np.int32)
    return state


class LearnedGate:
    """A gate step with the signature of :func:`.reference.gate_step`, for the host loop.

    ``combiners[k]`` is stage ``k``'s prefix combiner. :meth:`start` makes the state the host
    loop passes back to every stage (the loop calls ``gate.start(N, C)`` when present).
    """

    start = staticmethod(LearnedGateState.start)

    def __init__(self, combiners: Sequence[Combiner]) -> None:
        self.combiners = list(combiners)
        for k, comb in enumerate(self.combiners):
            if comb.num_members != k + 1:
                raise ValueError(f"stage {k}'s combiner has {comb.num_members} members, expected {k + 1}")

    def __call__(self, state: LearnedGateState, logits: np.ndarray, stage: int, num_stages: int,
                 threshold: float, kind: str = "max_prob") -> LearnedGateState:
        return learned_gate_step(state, logits, stage, num_stages, threshold, kind, self.combiners[stage])


def run_learned_cascade(
    member_logits: Sequence[np.ndarray],
    thresholds: Sequence[float],
    combiners: Sequence[Combiner],
    kind: str = "max_prob",
) -> CascadeResult:
    """Run a learned cascade over precomputed logits (N, C) of every member for every sample."""
    if not member_logits or len(combiners) != len(member_logits):
        raise ValueError(f"{len(member_logits)} members need as many stage combiners; got {len(combiners)}")
    return run_cascade(member_logits, thresholds, kind, gate=LearnedGate(combiners))
