"""Cascade semantics: the NumPy reference (:mod:`.reference`) and the gate front-end."""

from edge_committee.cascade.reference import (
    CONFIDENCE_CODES,
    CONFIDENCE_FUNCTIONS,
    CascadeEvaluation,
    CascadeResult,
    GateState,
    confidence,
    contributions,
    ensemble,
    evaluate_cascade,
    gate_step,
    run_cascade,
    softmax,
)

__all__ = [
    "CONFIDENCE_CODES",
    "CONFIDENCE_FUNCTIONS",
    "CascadeEvaluation",
    "CascadeResult",
    "GateState",
    "confidence",
    "contributions",
    "ensemble",
    "evaluate_cascade",
    "gate_step",
    "run_cascade",
    "softmax",
]
