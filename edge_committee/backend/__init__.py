"""Backends, siblings behind one interface, chosen by a stable string name.

Two kinds of backend:

- *member* backends make one :class:`~edge_committee.backend.base.BaseRunner` per member; the
  runtime's host loop (:mod:`edge_committee.runtime.cascade`) runs them with the gate between
  stages. ``onnxrt`` (ONNX Runtime, CPU) is the default and runs everywhere.
- *cascade* backends run the whole cascade themselves, where the control flow leaves Python
  (a fused ONNX file, a CUDA graph); they are tested against the host loop.

Each entry is ``"module:callable"``, imported only when the backend is chosen, so listing the
backends costs nothing. A member factory is called as ``factory(path, name=..., threads=...,
**options)``; a cascade factory as ``factory(model, threads=..., **options)`` with the loaded
:class:`~edge_committee.runtime.CascadeModel`, and returns an executor (see
:class:`edge_committee.runtime.cascade.Executor`).
"""

from __future__ import annotations

import importlib

#: member backends: name -> "module:callable" returning a BaseRunner for one model file
MEMBER_BACKENDS: dict[str, str] = {
    "onnxrt": "edge_committee.backend.onnxrt:OnnxrtRunner",
}

#: cascade backends: name -> "module:callable" returning an executor for a loaded model
CASCADE_BACKENDS: dict[str, str] = {
    "torch-cuda": "edge_committee.backend.torch_cuda:make_executor",
    "tensorrt": "edge_committee.backend.tensorrt.adapter:cascade_executor",
    "onnxrt-fused": "edge_committee.backend.onnxrt_fused:fused_executor",
}

BACKENDS = tuple(MEMBER_BACKENDS)  # kept for callers of the first release


def backend_names() -> list[str]:
    """Every backend name, member backends first."""
    return list(MEMBER_BACKENDS) + list(CASCADE_BACKENDS)


def _load(entry: str):
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


def unknown_backend(backend: str):
    from edge_committee.errors import EdgeCommitteeError

    return EdgeCommitteeError(f"unknown backend {backend!r}; available: {', '.join(backend_names())}")


def runner_for(backend: str, path, name: str | None = None, threads: int | None = None, **options):
    """A runner of member backend ``backend`` for the model file ``path``."""
    if backend not in MEMBER_BACKENDS:
        raise unknown_backend(backend)
    return _load(MEMBER_BACKENDS[backend])(path, name=name, threads=threads, **options)


def cascade_executor_for(backend: str, model, threads: int | None = None, **options):
    """An executor of cascade backend ``backend`` for a loaded model."""
    if backend not in CASCADE_BACKENDS:
        raise unknown_backend(backend)
    return _load(CASCADE_BACKENDS[backend])(model, threads=threads, **options)
