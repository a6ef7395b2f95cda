"""The CascadeGate TensorRT plugin library: where it is, loading it, and its creation fields.

The library (``libedge_committee_plugins.so``) exports ``getCreators`` and ``setLoggerFinder`` and links
no TensorRT library: ``trt.get_plugin_registry().load_library(path)`` registers the creator
``CascadeGate`` / ``1`` / ``edge_committee`` in any TensorRT >= 10.3 runtime, the lean one included.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge_committee.cascade.reference import CONFIDENCE_CODES, check_confidence_name
from edge_committee.errors import DependencyError
from edge_committee.gate import _ext

PLUGIN_NAME = "CascadeGate"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "edge_committee"
PLUGIN_LIBRARY_NAME = "libedge_committee_plugins.so"

#: Why a missing plugin library is missing, and what to do.
PLUGIN_BUILD_HINT = (
    "build it with TensorRT headers available: `EC_BUILD_TENSORRT=1 TENSORRT_ROOT=/path/to/TensorRT pip install .` "
    "(needs nvcc; on JetPack the headers in /usr/include/aarch64-linux-gnu are found without TENSORRT_ROOT), "
    "or point EC_PLUGIN_LIBRARY at a built library"
)


def plugin_library_path() -> str:
    """Absolute path of the plugin library: ``$EC_PLUGIN_LIBRARY``, else the one installed in the package.

    Raises :class:`DependencyError` saying how to build it when there is none.
    """
    explicit = os.environ.get("EC_PLUGIN_LIBRARY")
    if explicit:
        if not Path(explicit).is_file():
            raise DependencyError(f"EC_PLUGIN_LIBRARY={explicit!r} does not exist; {PLUGIN_BUILD_HINT}")
        return str(Path(explicit).resolve())
    installed = Path(__file__).resolve().parent.parent / "lib" / PLUGIN_LIBRARY_NAME
    if installed.is_file():
        return str(installed)
    raise DependencyError(f"the TensorRT plugin library {PLUGIN_LIBRARY_NAME} is not built (looked in {installed}); "
                          f"{PLUGIN_BUILD_HINT}")


def load_plugin_library(path: str | None = None) -> int:
    """dlopen the plugin library and check its entry points (no TensorRT needed); returns the handle.

    Uses the extension's loader when present, else ctypes. Errors say how to build the library.
    """
    path = path or plugin_library_path()
    ext = _ext.load()
    if ext is not None:
        try:
            return int(ext.load_plugin_library(path))
        except RuntimeError as exc:
            raise DependencyError(str(exc)) from None
    import ctypes

    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError as exc:
        raise DependencyError(f"could not load the plugin library {path!r}: {exc}; {PLUGIN_BUILD_HINT}") from None
    for symbol in ("getCreators", "setLoggerFinder"):
        if not hasattr(lib, symbol):
            raise DependencyError(f"{path!r} does not export {symbol}; {PLUGIN_BUILD_HINT}")
    return int(lib._handle)


def plugin_fields(stage: int, num_stages: int, threshold: float, kind: str = "max_prob") -> dict[str, Any]:
    """The creation attributes of one gate stage, by field name (the ONNX node's attributes too)."""
    check_confidence_name(kind)
    if not 0 <= stage < num_stages:
        raise ValueError(f"stage {stage} is outside [0, {num_stages})")
    return {"threshold": float(threshold), "stage": int(stage), "num_stages": int(num_stages),
            "confidence": CONFIDENCE_CODES[kind]}


def register_plugin(trt: Any = None, path: str | None = None) -> Any:
    """Load the library into TensorRT's plugin registry and return the ``CascadeGate`` creator.

    ``trt`` is the TensorRT module to use (``tensorrt``, ``tensorrt_lean``, ...); by default the first
    of those that imports.
    """
    if trt is None:
        trt = import_tensorrt()
    path = path or plugin_library_path()
    registry = trt.get_plugin_registry()
    registry.load_library(path)
    creator = registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    if creator is None:
        raise DependencyError(f"{path!r} loaded but TensorRT has no creator {PLUGIN_NAME}/{PLUGIN_VERSION}/"
                              f"{PLUGIN_NAMESPACE}; was it built from another version of edge_committee?")
    return creator


def import_tensorrt() -> Any:
    """The first TensorRT Python module that imports: full, lean (11.x name, then 10.x name)."""
    import importlib

    errors = []
    for name in ("tensorrt", "tensorrt_lean_bindings", "tensorrt_lean"):
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise DependencyError("no TensorRT Python module imports (" + "; ".join(errors) + "); install tensorrt, or "
                          "tensorrt-lean-cu13-bindings + tensorrt-lean-cu13-libs for the lean runtime")


def create_plugin(creator: Any, trt: Any, stage: int, num_stages: int, threshold: float, kind: str = "max_prob",
                  name: str = "cascade_gate", phase: Any = None) -> Any:
    """Create a CascadeGate plugin object through ``creator`` with the typed fields of one stage."""
    import numpy as np

    values = plugin_fields(stage, num_stages, threshold, kind)
    fields = [
        trt.PluginField("threshold", np.array([values["threshold"]], np.float32), trt.PluginFieldType.FLOAT32),
        trt.PluginField("stage", np.array([values["stage"]], np.int32), trt.PluginFieldType.INT32),
        trt.PluginField("num_stages", np.array([values["num_stages"]], np.int32), trt.PluginFieldType.INT32),
        trt.PluginField("confidence", np.array([values["confidence"]], np.int32), trt.PluginFieldType.INT32),
    ]
    plugin = creator.create_plugin(name, trt.PluginFieldCollection(fields), phase or trt.TensorRTPhase.BUILD)
    if plugin is None:
        raise ValueError(f"TensorRT refused to create {PLUGIN_NAME} with {values}")
    return plugin
