"""edge_committee: compile, select and run committees (cascades) of image classifiers.

Importing the package costs nothing: torch, onnx, onnxruntime and the compiled extension are
imported when a function that needs them is first called.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["build", "load", "stream", "__version__"]


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
