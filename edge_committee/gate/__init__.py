"""The cascade gate: one fused cascade step on the CPU (C++), on a CUDA device, in TensorRT, in ONNX.

Semantics: :func:`edge_committee.cascade.reference.gate_step` (the NumPy reference, ground truth).

- :func:`gate_step_cpu` -- the C++ gate on NumPy arrays; falls back to the reference (logged once)
  when the extension ``edge_committee._C`` is not built. :data:`backend` says which one runs.
- :func:`gate_step_cuda` -- one CUDA kernel launch on device buffers (CuPy / PyTorch / Numba arrays).
- :func:`plugin_library_path`, :func:`register_plugin` -- the TensorRT plugin ``CascadeGate``.
- :func:`append_gate`, :func:`make_gate_model` -- the gate as an ONNX plugin node or standard ops.

Importing this package imports neither torch, onnx nor TensorRT, and works without the extension.
"""

from __future__ import annotations

from edge_committee.gate import _ext
from edge_committee.gate.cpu import gate_step_cpu
from edge_committee.gate.cuda import cuda_available, gate_step_cuda
from edge_committee.gate.onnx_gate import GATE_DOMAIN, GATE_INPUTS, GATE_OUTPUTS, append_gate, make_gate_model
from edge_committee.gate.plugin import (
    PLUGIN_LIBRARY_NAME,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    create_plugin,
    load_plugin_library,
    plugin_fields,
    plugin_library_path,
    register_plugin,
)


def available() -> bool:
    """True when the C++ extension ``edge_committee._C`` is importable."""
    return _ext.load() is not None


def extension_error() -> str | None:
    """Why the extension could not be imported, if it could not."""
    _ext.load()
    return _ext.error()


def __getattr__(name: str):
    # ``backend`` is computed on access: "extension" (C++ gate) or "numpy" (the reference).
    if name == "backend":
        return _ext.backend()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GATE_DOMAIN",
    "GATE_INPUTS",
    "GATE_OUTPUTS",
    "PLUGIN_LIBRARY_NAME",
    "PLUGIN_NAME",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "append_gate",
    "available",
    "backend",
    "create_plugin",
    "cuda_available",
    "extension_error",
    "gate_step_cpu",
    "gate_step_cuda",
    "load_plugin_library",
    "make_gate_model",
    "plugin_fields",
    "plugin_library_path",
    "register_plugin",
]
