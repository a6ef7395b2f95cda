"""Finding the private extension ``edge_committee._C`` (built from ``plugins/``), or saying why not.

The extension is optional: without it the gate runs the NumPy reference and says so once.
``EC_EXTENSION_PATH`` points at a built ``_C*.so`` outside the package (tests, local builds).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import types

_LOG = logging.getLogger("edge_committee.gate")

#: How to get the extension, for messages.
BUILD_HINT = (
    "build it with `pip install .` from the repository (needs cmake, a C++17 compiler and pybind11; "
    "set EC_REQUIRE_EXTENSION=1 to make a failed build an error, EC_BUILD_CUDA=1 for the CUDA gate)"
)

_state: dict = {"loaded": False, "module": None, "error": None, "warned": False}


def _import() -> types.ModuleType:
    path = os.environ.get("EC_EXTENSION_PATH")
    if path:
        spec = importlib.util.spec_from_file_location("edge_committee._C", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"EC_EXTENSION_PATH={path!r} is not a loadable extension module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module("edge_committee._C")


def load() -> types.ModuleType | None:
    """The extension module, or None if it is absent (the reason is kept for :func:`error`)."""
    if not _state["loaded"]:
        _state["loaded"] = True
        try:
            _state["module"] = _import()
        except ImportError as exc:  # absent or unloadable: fall back, remember why
            _state["error"] = str(exc)
    return _state["module"]


def error() -> str | None:
    """Why the extension could not be loaded (None if it was, or was not tried yet)."""
    return _state["error"]


def reset() -> None:
    """Forget the loaded module so the next :func:`load` looks again (tests, after a build)."""
    _state.update(loaded=False, module=None, error=None, warned=False)


def backend() -> str:
    """``"extension"`` when the C++ gate is used, else ``"numpy"`` (the reference)."""
    return "extension" if load() is not None else "numpy"


def warn_fallback_once() -> None:
    """Log, once per process, that the NumPy reference stands in for the missing extension."""
    if not _state["warned"]:
        _state["warned"] = True
        _LOG.warning(
            "edge_committee._C is not available (%s); the gate runs the NumPy reference instead: %s",
            _state["error"] or "not built",
            BUILD_HINT,
        )
