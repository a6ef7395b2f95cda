"""Export stage: PyTorch member -> ONNX file with a dynamic batch, checked against PyTorch.

torch and onnx are imported only when a function runs, never when this package is imported.
"""

from edge_committee.export.loader import load_torch_member, read_state_dict, resolve_factory
from edge_committee.export.onnx_member import check_member_input, copy_member, model_digest
from edge_committee.export.torch_onnx import ExportReport, export_onnx

__all__ = ["ExportReport", "check_member_input", "copy_member", "export_onnx", "load_torch_member",
           "model_digest", "read_state_dict", "resolve_factory"]
