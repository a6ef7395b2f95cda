"""Cascade backend ``onnxrt-fused``: the whole cascade as one ONNX file run by ONNX Runtime."""

from edge_committee.backend.onnxrt_fused.executor import FusedOnnxExecutor, fused_executor

__all__ = ["FusedOnnxExecutor", "fused_executor"]
