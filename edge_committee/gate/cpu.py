"""The gate on the CPU: the C++ implementation when the extension is built, else the NumPy reference."""

from __future__ import annotations

import numpy as np

from edge_committee.cascade.reference import CONFIDENCE_CODES, GateState, check_confidence_name, gate_step
from edge_committee.gate import _ext


def _contiguous(array: np.ndarray, dtype: type) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=dtype)


def gate_step_cpu(
    state: GateState,
    logits: np.ndarray,
    stage: int,
    num_stages: int,
    threshold: float,
    kind: str = "max_prob",
) -> GateState:
    """One cascade stage on the CPU, in place; same contract as ``reference.gate_step``.

    ``logits`` (M, C) are member ``stage``'s logits for the samples ``state.active`` (M,); float16 and
    float32 are read as they are, other dtypes are cast to float32 first. ``threshold`` is ignored at
    the last stage. Returns ``state`` with the exits written and ``state.active`` set to the survivors
    (original indices, stable order). Uses the C++ gate when ``edge_committee._C`` is built, else the
    NumPy reference (logged once; see :func:`edge_committee.gate.backend`).
    """
    check_confidence_name(kind)
    ext = _ext.load()
    if ext is None:
        _ext.warn_fallback_once()
        return gate_step(state, logits, stage, num_stages, threshold, kind)
    x = np.asarray(logits)
    if x.dtype not in (np.float16, np.float32):
        x = x.astype(np.float32)
    x = np.ascontiguousarray(x)
    idx = _contiguous(state.active, np.int32)
    if x.shape != (idx.shape[0], state.prob_sum.shape[1]):
        raise ValueError(
            f"stage {stage}: logits have shape {x.shape}, expected "
            f"({idx.shape[0]}, {state.prob_sum.shape[1]}) for the active samples"
        )
    # The C++ gate updates the state in place: make sure each array is one it can write.
    state.prob_sum = _contiguous(state.prob_sum, np.float32)
    state.label = _contiguous(state.label, np.int32)
    state.conf = _contiguous(state.conf, np.float32)
    state.exit_stage = _contiguous(state.exit_stage, np.int32)
    state.flag = _contiguous(state.flag, np.int32)
    state.active = ext.gate_step_cpu(
        state.prob_sum,
        state.label,
        state.conf,
        state.exit_stage,
        state.flag,
        idx,
        x,
        int(stage),
        int(num_stages),
        float(threshold),
        CONFIDENCE_CODES[kind],
    )
    return state
