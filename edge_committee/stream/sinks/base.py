"""The sink interface the pipeline writes to."""

from __future__ import annotations

from edge_committee.stream.types import Event, SourceError, StreamBatch


class SinkError(SourceError):
    """A sink cannot write (read-only or full file system, a path refused): one line naming the sink.

    Raised from :meth:`Sink.write` (or :meth:`Sink.close`); the pipeline then stops, the other
    sinks are closed (flushed) and the CLI prints the line and exits 1.
    """


class Sink:
    """Receives every processed batch and every event. ``start`` is called once before the first
    batch with the source names and the cascade's member names; ``close`` flushes (always called,
    also on Ctrl-C or an error; ``ok=False`` then). Events may come from grabber threads."""

    #: set by a sink to ask the pipeline to stop (e.g. 'q' pressed in a display window)
    stop_requested = False

    def start(self, sources: list[str], members: list[str]) -> None:
        self.sources, self.members = sources, members

    def write(self, batch: StreamBatch, fps: dict[str, float]) -> None:
        """``fps``: the processed frames per second of each source so far."""

    def event(self, event: Event) -> None:
        pass

    def close(self, ok: bool = True) -> None:
        pass
