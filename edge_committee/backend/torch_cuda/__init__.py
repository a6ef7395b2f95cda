"""PyTorch-CUDA members: the bundle's ONNX files converted by onnx2torch, run by the device runtime.

``ec.load(bundle, backend="torch-cuda", precision="fp16", mode="graph")`` builds a
:class:`~edge_committee.backend.device.DeviceCascade` over :class:`TorchMember` s (see
:func:`make_executor` for the options). Importing this package imports neither torch nor onnx2torch.
"""

from edge_committee.backend.torch_cuda.factory import cuda_unavailable_reason, make_executor
from edge_committee.backend.torch_cuda.loader import ModuleFromOnnx
from edge_committee.backend.torch_cuda.member import TorchMember

__all__ = ["ModuleFromOnnx", "TorchMember", "cuda_unavailable_reason", "make_executor"]
