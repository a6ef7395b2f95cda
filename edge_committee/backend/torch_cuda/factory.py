"""The ``torch-cuda`` cascade backend: :func:`make_executor` (registered in ``CASCADE_BACKENDS``)."""

from __future__ import annotations

import importlib.util
from typing import Any, Sequence

from edge_committee.errors import DependencyError

#: What to tell a user where this backend cannot run.
FALLBACK_HINT = "the backend that works here is onnxrt (ONNX Runtime on the CPU): --backend onnxrt"


def cuda_unavailable_reason(device: Any = 0) -> str | None:
    """Why PyTorch cannot run on CUDA ``device`` here, or None when it can."""
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (install a CUDA build of torch)"
    import torch

    if torch.version.cuda is None:
        return f"PyTorch {torch.__version__} is a CPU-only build (install a CUDA build of torch)"
    if not torch.cuda.is_available():
        return f"PyTorch {torch.__version__} sees no CUDA device (no NVIDIA GPU or driver)"
    index = device if isinstance(device, int) else torch.device(device).index or 0
    if index >= torch.cuda.device_count():
        return f"CUDA device {index} does not exist; this machine has {torch.cuda.device_count()}"
    return None


def make_executor(model, threads: int | None = None, precision: str = "fp32", mode: str = "graph",
                  max_batch: int = 256, buckets: Sequence[int] | None = None, device: Any = 0,
                  gate_impl: str = "auto", tf32: bool = False, exact_preprocessing: bool = True):
    """A :class:`~edge_committee.backend.device.DeviceCascade` of PyTorch members for a loaded bundle.

    Args:
        model: the loaded :class:`~edge_committee.runtime.CascadeModel`.
        threads: unused (the GPU runs the members).
        precision: ``fp32`` (default) or ``fp16`` members.
        mode: ``graph`` (one CUDA graph with conditional nodes; default) or ``host`` (one replay per
            stage and a 4-byte count read between stages).
        max_batch: the largest batch run at once (default 256).
        buckets: batch sizes the stage graphs are captured for (default: powers of two).
        device: CUDA device ordinal (default 0), or ``"cpu"`` to run the same runtime eagerly on the
            CPU (slow; for debugging and the CPU tests).
        gate_impl: ``auto``, ``cuda`` (the gate kernel of ``edge_committee._C``) or ``torch``.
        tf32: allow TF32 in FP32 members (default False).
        exact_preprocessing: PIL-style plans in float64, bit-exact (default True; see DeviceCascade).

    Raises:
        DependencyError: with one line naming what is missing and the backend that works here.
    """
    from edge_committee.backend.device import executor_for
    from edge_committee.backend.torch_cuda.member import TorchMember

    if device != "cpu":
        reason = cuda_unavailable_reason(device)
        if reason:
            raise DependencyError(f"backend torch-cuda needs PyTorch with CUDA and an NVIDIA GPU: {reason}; "
                                  f"{FALLBACK_HINT}")
    members = [TorchMember(model.member_path(n), name=n, precision=precision) for n in model.members]
    return executor_for(model, members, device=device, mode=mode, max_batch=max_batch, buckets=buckets,
                        gate_impl=gate_impl, tf32=tf32, exact_preprocessing=exact_preprocessing)
