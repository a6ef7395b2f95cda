"""edge_committee: compile, select and run committees (cascades) of image classifiers.

Importing the package costs nothing: torch, onnx, onnxruntime and the compiled extension are
imported when a function that needs them is first called.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["build", "load", "stream", "__version__"]


def _map_calibration_in_a_checkout() -> None:
    """Make ``edge_committee.calibration`` importable when the package runs from a source checkout.

    Installed, ``setup.py`` maps the repository's top-level ``calibration/`` folder to
    ``edge_committee.calibration``. ``python -m edge_committee`` in the repository root imports this
    folder instead of the installed copy, so the same mapping is made here, by a finder asked only
    for that one name after the normal ones have failed."""
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.join(os.path.dirname(here), "calibration")
    if os.path.exists(os.path.join(here, "calibration")) or not os.path.isfile(os.path.join(top, "__init__.py")):
        return  # installed (the mapped copy is inside the package), or no checkout around it
    import importlib.abc
    import importlib.util
    import sys

    class _CalibrationFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "edge_committee.calibration":
                return None
            return importlib.util.spec_from_file_location(name, os.path.join(top, "__init__.py"),
                                                          submodule_search_locations=[top])

    if not any(type(f).__name__ == "_CalibrationFinder" for f in sys.meta_path):
        sys.meta_path.append(_CalibrationFinder())


_map_calibration_in_a_checkout()


def build(*args, **kwargs):
    """Build a bundle from a committee spec; see :func:`edge_committee.api.build`."""
    from edge_committee.api import build as _build

    return _build(*args, **kwargs)


def load(*args, **kwargs):
    """Load a bundle for prediction; see :func:`edge_committee.api.load`."""
    from edge_committee.api import load as _load

    return _load(*args, **kwargs)


def stream(*args, **kwargs):
    """Classify frames from cameras, streams, files or folders by URI; see :func:`edge_committee.stream.stream`."""
    from edge_committee.stream import stream as _stream

    return _stream(*args, **kwargs)
