"""Precision stage: FP16 and INT8 (explicit Q/DQ) members, calibrated and gated on accuracy.

TensorRT 11 has no weak typing and no implicit INT8 calibration: precision lives in the ONNX
(design.md §4). This stage writes ``<member>.fp16.onnx`` (onnxconverter-common) and
``<member>.int8.onnx`` (onnxruntime ``quantize_static``, symmetric int8 Q/DQ, per-channel
weights), checks them (:func:`check_qdq`), evaluates them with ONNX Runtime and keeps those that
lose at most ``tolerance_pts`` of top-1 against FP32. Entry point:
:func:`make_precision_variants`. onnx and onnxruntime are imported when a function runs.
"""

from edge_committee.precision.accuracy_gate import evaluate_onnx, gate, top1_accuracy
from edge_committee.precision.fp16 import fp16_emulation, fp16_from_fp32
from edge_committee.precision.int8 import (
    CALIBRATION_METHODS,
    ArrayCalibrationReader,
    Int8Config,
    int8_from_fp32,
    qdq_scales,
    sensitive_nodes,
)
from edge_committee.precision.qdq_check import QdqError, QdqReport, check_qdq
from edge_committee.precision.variants import (
    MODES,
    PRECISIONS,
    PrecisionVariant,
    choose_variant,
    make_precision_variants,
    resolve_precisions,
)

__all__ = [
    "ArrayCalibrationReader",
    "CALIBRATION_METHODS",
    "Int8Config",
    "MODES",
    "PRECISIONS",
    "PrecisionVariant",
    "QdqError",
    "QdqReport",
    "check_qdq",
    "choose_variant",
    "evaluate_onnx",
    "fp16_emulation",
    "fp16_from_fp32",
    "gate",
    "int8_from_fp32",
    "make_precision_variants",
    "qdq_scales",
    "resolve_precisions",
    "sensitive_nodes",
    "top1_accuracy",
]
