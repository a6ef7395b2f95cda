"""A bundle as a Triton Inference Server model repository, and the bundled server to run it.

- :func:`export_triton` (``edge-committee export-triton``): one Triton model per cascade member
  and the cascade as a Python-backend BLS model running the SDK's own host loop (:mod:`.bls`).
- :class:`TritonServer` (``edge-committee serve``): starts ``tritonserver`` on a repository,
  bound to 127.0.0.1 unless told otherwise, and stops it by its pid.

The modules the exported models import (:mod:`.bls`, :mod:`.member_ort`, :mod:`.tensors`) are
copied into the repository; this package's ``__init__`` therefore imports nothing eagerly.
"""

from __future__ import annotations

__all__ = ["TritonExport", "TritonServer", "export_triton", "read_export"]

_LAZY = {"TritonExport": "export", "export_triton": "export", "read_export": "export", "TritonServer": "server"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
