"""Where results go: ``KIND:TARGET`` strings, one module per kind, several at once.

- ``jsonl:results.jsonl`` (``jsonl:-`` for stdout): one JSON line per frame plus event lines;
- ``video:overlay.mp4``: the frames with label, confidence, exit stage and fps drawn, H.264 (PyAV);
- ``display:`` a window per source (OpenCV with a GUI and a display only);
- ``udp://HOST:PORT``, ``rtp://HOST:PORT``, ``rtsp://HOST:PORT/PATH``: the overlay streamed live
  (MPEG-TS over UDP or RTP, or served over RTSP by this process; ``#publish=1`` pushes to an RTSP
  server instead), as jetson-utils' ``videoOutput``.
"""

from __future__ import annotations

import importlib

from edge_committee.stream.sinks.base import Sink
from edge_committee.stream.types import SourceError, redact

#: kind -> "module:class"
SINKS = {
    "jsonl": "edge_committee.stream.sinks.jsonl:JsonlSink",
    "video": "edge_committee.stream.sinks.video:VideoSink",
    "display": "edge_committee.stream.sinks.display:DisplaySink",
}
#: URI schemes of the network outputs (``--sink udp://...``): the whole URI is the target
NETWORK_SINKS = ("udp", "rtp", "rtsp")


def make_sink(spec: str | Sink, force: bool = False) -> Sink:
    """The sink for ``KIND:TARGET`` (a :class:`Sink` is returned as it is).

    ``force``: a file sink may replace an existing file that is not ours (``run --force``).
    """
    if isinstance(spec, Sink):
        return spec
    kind, _, target = str(spec).partition(":")
    if kind in NETWORK_SINKS and target.startswith("//"):
        from edge_committee.stream.sinks.network import NetworkSink

        return NetworkSink(str(spec))
    if kind not in SINKS:
        raise SourceError(f"sink {redact(str(spec))!r}: expected KIND:TARGET with KIND one of {', '.join(SINKS)}, or "
                          "udp://HOST:PORT, rtp://HOST:PORT, rtsp://HOST:PORT/PATH (e.g. jsonl:-, "
                          "jsonl:results.jsonl, video:overlay.mp4, display:, udp://127.0.0.1:5000)")
    module, _, attr = SINKS[kind].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(target, force=True) if force and kind == "video" else cls(target)


__all__ = ["SINKS", "Sink", "make_sink"]
