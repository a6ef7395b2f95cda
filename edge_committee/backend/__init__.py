"""Backends, siblings behind :class:`~edge_committee.backend.base.BaseRunner`.

``onnxrt`` (ONNX Runtime, CPU; the default) is built here; TensorRT and PyTorch CUDA runners are
later siblings. :func:`runner_for` picks one by name.
"""

from __future__ import annotations

BACKENDS = ("onnxrt",)


def runner_for(backend: str, path, name: str | None = None, threads: int | None = None):
    """A runner of ``backend`` for the model file ``path``."""
    from edge_committee.errors import EdgeCommitteeError

    if backend == "onnxrt":
        from edge_committee.backend.onnxrt import OnnxrtRunner

        return OnnxrtRunner(path, threads=threads, name=name)
    raise EdgeCommitteeError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
