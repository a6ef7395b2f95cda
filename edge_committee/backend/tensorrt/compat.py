"""Which TensorRT module to use, its version, and the names that exist only in some versions.

Supported: TensorRT 10.3 (JetPack 6) through 11.x. The code calls the TensorRT Python API
directly (no Polygraphy: see ``docs/tensorrt.md``), and every name it uses must exist in the real
bindings of each supported version; ``tests/backend/test_tensorrt_api_surface.py`` checks that
against the registered names of the downloaded bindings wheels.

A name that exists only in some versions is reached only through :func:`versioned`, which reads
:data:`VERSIONED_NAMES`; the API-surface test reads the same table, so it knows which names are
guarded and checks that each is really absent outside its range.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import sys
from types import ModuleType
from typing import Any

from edge_committee.errors import DependencyError

#: the oldest TensorRT this code supports (JetPack 6.x)
MIN_VERSION = (10, 3)

#: name -> (first, last) TensorRT major version (inclusive) that registers it. Only the DLA path
#: of TensorRT 10.x uses them: 10.x builds DLA engines from a weakly typed network with precision
#: flags; TensorRT 11 removed weak typing (every network is strongly typed).
VERSIONED_NAMES: dict[str, tuple[int, int]] = {
    "BuilderFlag.FP16": (10, 10),
    "BuilderFlag.INT8": (10, 10),
}

#: Python modules that provide the full API (builder + ONNX parser), in preference order
BUILDER_MODULES = ("tensorrt", "tensorrt_bindings")
#: modules that can deserialize and run engines; the lean runtime (11.x wheel name, then JetPack's)
RUNTIME_MODULES = BUILDER_MODULES + ("tensorrt_lean_bindings", "tensorrt_lean")

#: What to install, said once for every "no TensorRT" error.
INSTALL_HINT = (
    "on a Jetson install JetPack (it ships TensorRT and its Python bindings: apt install python3-libnvinfer); "
    "on x86_64 or SBSA install the `tensorrt-cu12` or `tensorrt-cu13` wheel (its libraries come from NVIDIA's "
    "package index, so pip needs access to it)"
)


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.3.0.26"`` -> ``(10, 3, 0, 26)`` (non-numeric tails ignored)."""
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0])[:4])


def module_version(trt: ModuleType) -> str:
    """The TensorRT version string of a module (``__version__``)."""
    return str(getattr(trt, "__version__", "0"))


def short_version(version: str) -> str:
    """``"10.3.0.26"`` -> ``"10.3"`` (the part that appears in engine file names)."""
    return ".".join(str(x) for x in version_tuple(version)[:2])


def versioned(trt: ModuleType, name: str) -> Any:
    """The attribute ``name`` (dotted, e.g. ``"BuilderFlag.FP16"``) of ``trt``, if this version has it.

    ``name`` must be listed in :data:`VERSIONED_NAMES`; returns None outside its version range, so
    callers branch on the result instead of on version numbers scattered through the code.
    """
    first, last = VERSIONED_NAMES[name]
    major = version_tuple(module_version(trt))[0]
    if not first <= major <= last:
        return None
    obj: Any = trt
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _import_first(names: tuple[str, ...]) -> tuple[ModuleType | None, list[str]]:
    errors = []
    for name in names:
        try:
            return importlib.import_module(name), errors
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    return None, errors


def _check_supported(trt: ModuleType) -> ModuleType:
    version = module_version(trt)
    if version_tuple(version)[:2] < MIN_VERSION:
        raise DependencyError(
            f"TensorRT {version} ({trt.__name__}) is too old: edge_committee needs TensorRT >= "
            f"{'.'.join(map(str, MIN_VERSION))}; upgrade it ({INSTALL_HINT})"
        )
    return trt


#: device files an NVIDIA driver makes: a discrete GPU, a Jetson's integrated GPU, WSL's GPU
GPU_DEVICE_FILES = ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/dxg")
#: backends that run only on an NVIDIA GPU (never suggested on a machine without one)
GPU_ONLY_BACKENDS = ("torch-cuda",)


def nvidia_gpu_found() -> bool:
    """Whether this machine has an NVIDIA GPU, from the driver's device files (imports nothing)."""
    if any(os.path.exists(p) for p in GPU_DEVICE_FILES):
        return True
    with contextlib.suppress(OSError):
        return any(os.scandir("/proc/driver/nvidia/gpus"))
    return False


def other_backends() -> str:
    """The registered backends that need no TensorRT and can run on this machine, for error messages."""
    from edge_committee.backend import backend_names

    gpu = nvidia_gpu_found()
    names = [n for n in backend_names() if not n.startswith("tensorrt") and (gpu or n not in GPU_ONLY_BACKENDS)]
    return ", ".join(names) or "onnxrt"


def _importable(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def builder_installed() -> bool:
    """Whether the full TensorRT (with its builder) can be imported here (imports nothing)."""
    return any(_importable(n) for n in BUILDER_MODULES)


def compile_blocker() -> str | None:
    """Why ``edge-committee compile`` cannot run on this machine (no GPU, no builder), or None."""
    if not nvidia_gpu_found():
        return "no NVIDIA GPU found on this machine"
    if not builder_installed():
        lean = any(_importable(n) for n in RUNTIME_MODULES[len(BUILDER_MODULES):])
        return ("only the TensorRT lean runtime is installed here, and it cannot build engines" if lean
                else "TensorRT is not installed here")
    return None


def import_builder() -> ModuleType:
    """The full TensorRT module (builder and ONNX parser), or a :class:`DependencyError` saying what to install.

    On a machine without an NVIDIA GPU the message says so first: installing TensorRT there would
    only move the failure (engines are built on the GPU that runs them).
    """
    trt, errors = _import_first(BUILDER_MODULES)
    if trt is not None:
        return _check_supported(trt)
    lean, _ = _import_first(RUNTIME_MODULES[len(BUILDER_MODULES):])
    found = (f"only the TensorRT lean runtime ({lean.__name__} {module_version(lean)}) is installed, and it "
             "cannot build engines" if lean is not None else "TensorRT is not installed")
    if not nvidia_gpu_found():
        raise DependencyError(
            f"no NVIDIA GPU found on this machine, and TensorRT builds engines on the GPU that will run them: "
            f"run edge-committee compile on the target device (a Jetson, a GPU server; it needs the full TensorRT: "
            f"{INSTALL_HINT}); {found} here. On this machine run bundles with --backend {other_backends()}"
        )
    raise DependencyError(
        f"compiling engines needs the full TensorRT with its builder: {found}; {INSTALL_HINT}. "
        f"Without TensorRT, run bundles with --backend {other_backends()}"
    )


def import_runtime() -> ModuleType:
    """A TensorRT module that can run engines: the full one, else the lean runtime."""
    trt, errors = _import_first(RUNTIME_MODULES)
    if trt is not None:
        return _check_supported(trt)
    raise DependencyError(
        f"--backend tensorrt needs TensorRT (or its lean runtime), which is not installed; {INSTALL_HINT}, "
        f"or `pip install tensorrt-lean-cu13-bindings tensorrt-lean-cu13-libs` to run version-compatible engines. "
        f"Without TensorRT, use --backend {other_backends()}"
    )


#: TensorRT objects whose creation failed; never freed (see :func:`keep_broken`)
_BROKEN: list[Any] = []


def keep_broken(obj: Any) -> None:
    """Never free ``obj``, a ``trt.Runtime``/``trt.Builder`` whose creation logged an error.

    Without a usable GPU, TensorRT's Python constructors only log an error and return a broken
    object, and freeing it crashes the process (seen with the 11.4 lean runtime's ``Runtime``). One
    extra reference keeps it alive through interpreter shutdown too; it costs a few bytes.
    """
    if obj is not None:
        import ctypes

        _BROKEN.append(obj)
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def capturing_logger(trt: ModuleType, min_severity: str = "WARNING"):
    """A ``trt.ILogger`` that keeps every message and forwards those at ``min_severity`` or worse.

    TensorRT reports most failures only through its logger (a builder or runtime returns None);
    keeping the messages lets an error name TensorRT's own reason in one line.
    """
    import logging

    log = logging.getLogger("edge_committee.tensorrt")
    severity = trt.ILogger.Severity
    errors = (severity.INTERNAL_ERROR, severity.ERROR)
    ranks = {severity.INTERNAL_ERROR: 0, severity.ERROR: 1, severity.WARNING: 2, severity.INFO: 3,
             severity.VERBOSE: 4}
    limit = ranks[getattr(severity, min_severity)]

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[Any, str]] = []

        def log(self, sev, msg) -> None:  # called by TensorRT, possibly from its threads
            self.messages.append((sev, str(msg)))
            if ranks.get(sev, 4) <= limit:
                log.log(logging.ERROR if sev in errors else logging.WARNING if ranks.get(sev, 4) == 2
                        else logging.INFO, "[TensorRT] %s", msg)

        def errors(self) -> list[str]:
            return [m for s, m in self.messages if s in errors]

        def last_error(self, default: str = "no message from TensorRT") -> str:
            errs = self.errors()
            return errs[-1] if errs else default

        def clear(self) -> None:
            self.messages.clear()

    return CapturingLogger()
