"""Camera pipelines: sources by URI, latest-frame grabbers, batching across cameras, sinks, stats.

``edge_committee.stream.stream(model, ["rtsp://cam/stream", "clip.mp4"])`` (also ``ec.stream``)
yields batches of per-frame results; ``edge-committee run`` is the command line. Decoding is
PyAV (``pip install edge-committee[stream]``), imported only when a source opens.
"""

from edge_committee.stream.pipeline import StreamPipeline, stream
from edge_committee.stream.types import Event, Frame, FrameResult, SourceError, StallError, StreamBatch
from edge_committee.stream.uri import open_source, parse_uri

__all__ = ["Event", "Frame", "FrameResult", "SourceError", "StallError", "StreamBatch", "StreamPipeline",
           "open_source", "parse_uri", "stream"]


class _CallableModule(__import__("types").ModuleType):
    """``ec.stream(...)`` must keep working after ``import edge_committee.stream``: importing a
    submodule rebinds the package attribute ``edge_committee.stream`` to the module, replacing the
    lazy function of ``edge_committee/__init__.py``, so the module itself is callable."""

    def __call__(self, *args, **kwargs):
        return stream(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
