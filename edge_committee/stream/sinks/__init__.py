"""Where results go: ``KIND:TARGET`` strings, one module per kind, several at once.

- ``jsonl:results.jsonl`` (``jsonl:-`` for stdout): one JSON line per frame plus event lines;
- ``video:overlay.mp4``: the frames with label, confidence, exit stage and fps drawn, H.264 (PyAV);
- ``display:`` a window per source (OpenCV with a GUI and a display only).
"""

from __future__ import annotations

import importlib

from edge_committee.stream.sinks.base import Sink
from edge_committee.stream.types import SourceError

#: kind -> "module:class"
SINKS = {
    "jsonl": "edge_committee.stream.sinks.jsonl:JsonlSink",
    "video": "edge_committee.stream.sinks.video:VideoSink",
    "display": "edge_committee.stream.sinks.display:DisplaySink",
}


def make_sink(spec: str | Sink, force: bool = False) -> Sink:
    """The sink for ``KIND:TARGET`` (a :class:`Sink` is returned as it is).

    ``force``: a file sink may replace an existing file that is not ours (``run --force``).
    """
    if isinstance(spec, Sink):
        return spec
    kind, _, target = str(spec).partition(":")
    if kind not in SINKS:
        raise SourceError(f"sink {spec!r}: expected KIND:TARGET with KIND one of {', '.join(SINKS)} "
                          "(e.g. jsonl:-, jsonl:results.jsonl, video:overlay.mp4, display:)")
    module, _, attr = SINKS[kind].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(target, force=True) if force and kind == "video" else cls(target)


__all__ = ["SINKS", "Sink", "make_sink"]
