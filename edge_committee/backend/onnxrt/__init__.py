from edge_committee.backend.onnxrt.runner import OnnxrtRunner

__all__ = ["OnnxrtRunner"]
