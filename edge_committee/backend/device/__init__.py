"""The device runtime every GPU backend plugs into: one stream, state on the GPU, host loop or one CUDA graph.

:class:`DeviceCascade` runs any :class:`~edge_committee.backend.base.device.DeviceMember` s (PyTorch
members from :mod:`edge_committee.backend.torch_cuda`; TensorRT engines from their own backend).
Importing this package imports neither torch nor cuda-python.
"""

from edge_committee.backend.device.runtime import DeviceCascade, default_buckets

__all__ = ["DeviceCascade", "default_buckets"]
