"""Sources -> grabbers -> batcher -> ``model.predict`` -> results -> sinks, with stats.

The pipeline knows the cascade only through the facade: it passes raw frames to
``CascadeModel.predict`` (whatever backend runs it) and reads the ``Prediction``; per-stage exit
counts come from ``Prediction.exit_stage``. A segmentation bundle's ``SegmentationModel`` runs
through the same loop: its results are :class:`~edge_committee.stream.results.SegmentationResult`
(class map, class histogram, tiles per exit stage), see :mod:`edge_committee.stream.results`. It runs in the caller's thread; each source has its
own grabber thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from edge_committee.stream.batcher import Batcher
from edge_committee.stream.grabber import Grabber
from edge_committee.stream.results import frame_exit_stages, results_for
from edge_committee.stream.sinks import Sink, make_sink
from edge_committee.stream.sinks.base import SinkError
from edge_committee.stream.sources.base import Source
from edge_committee.stream.stats import StreamStats, format_stats
from edge_committee.stream.types import Event, Frame, SourceError, StreamBatch
from edge_committee.stream.uri import open_source

log = logging.getLogger("edge_committee.stream")

#: how long closing waits for each grabber still blocked in a read, s (then it is left, a daemon)
JOIN_S = 2.0
_QUIET_EVENTS = ("stats", "summary")


def _unique_names(sources: list[Source]) -> None:
    seen: dict[str, int] = {}
    for s in sources:
        n = seen.get(s.name, 0)
        seen[s.name] = n + 1
        if n:
            s.name = f"{s.name}[{n}]"


def _as_batch(frames: list[Frame]):
    """An (N, H, W, C) array when every frame has one shape (the fast path), else a list."""
    first = frames[0].image.shape
    if all(f.image.shape == first for f in frames):
        return np.stack([f.image for f in frames])
    return [f.image for f in frames]


class StreamPipeline:
    """Run a loaded cascade on frames from several sources; iterate to get :class:`StreamBatch` es.

    Args:
        model: a loaded :class:`~edge_committee.runtime.CascadeModel` (or anything with
            ``predict(images)``, ``members`` and ``labels``).
        sources: URIs (see :mod:`edge_committee.stream.uri`) or :class:`Source` objects.
        sinks: ``KIND:TARGET`` strings or :class:`Sink` objects (default none).
        window_ms: collection window of a tick after its first frame, ms (default 30).
        staleness_ms: live frames older than this are dropped, ms (default 500; 0 = never).
        stats_every: emit a ``stats`` event every this many s (default None: only the summary).
        max_frames: stop after this many frames in total (default None).
        duration: stop after this many s (default None).
        on_event: called with every :class:`Event` (from any thread).
        seed: seed of the reconnect jitter (default None: random).
        **source_options: defaults for every source (``frames``, ``open_timeout``,
            ``stall_timeout``, ``max_reconnects``, ``backoff``, ... and kind options).

    A source that cannot be parsed or opened is reported as an ``error`` event and the others
    keep running; only when *every* source fails does iterating raise :class:`SourceError`.
    """

    def __init__(self, model, sources: Sequence[str | Source] | str, sinks: Iterable[str | Sink] = (), *,
                 window_ms: float = 30.0, staleness_ms: float = 500.0, stats_every: float | None = None,
                 max_frames: int | None = None, duration: float | None = None,
                 on_event: Callable[[Event], None] | None = None, seed: int | None = None,
                 **source_options: Any) -> None:
        if isinstance(sources, (str, Source)):
            sources = [sources]
        if not sources:
            raise SourceError("no source given; pass at least one URI (a file, rtsp://..., v4l2:///dev/video0, test://)")
        if window_ms < 0 or staleness_ms < 0:
            raise SourceError(f"window_ms ({window_ms}) and staleness_ms ({staleness_ms}) must be >= 0")
        self.model = model
        self.sources: list[Source] = []
        self.errors: list[str] = []
        for uri in sources:
            try:
                self.sources.append(open_source(uri, **source_options))
            except SourceError as exc:
                self.errors.append(str(exc))
        _unique_names(self.sources)
        self.sinks = [make_sink(s) for s in sinks]
        self.window_s, self.staleness_s = window_ms / 1e3, staleness_ms / 1e3
        self.stats_every, self.max_frames, self.duration = stats_every, max_frames, duration
        self.on_event = on_event
        import random

        self.rng = random.Random(seed)
        self.stop_reason: str | None = None
        self._stop = threading.Event()
        self.stats: StreamStats | None = None
        self.summary: dict | None = None
        self.grabbers: list[Grabber] = []

    # ------------------------------------------------------------------------------ control
    def stop(self, reason: str = "stop requested") -> None:
        """Stop at the next tick (safe from a signal handler or another thread)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def _emit(self, event: Event) -> None:
        for s in self.sinks:
            s.event(event)
        if self.on_event is not None:
            self.on_event(event)
        if event.kind in _QUIET_EVENTS:
            return
        level = logging.WARNING if event.kind in ("error", "warning", "stall", "eos") else logging.INFO
        log.log(level, "%s%s: %s", f"{event.source} " if event.source else "", event.kind, event.message)

    @property
    def failed(self) -> list[str]:
        """One line per source that failed for good (could not be parsed, opened or read)."""
        return self.errors + [g.error for g in self.grabbers if g.state == "failed" and g.error]

    # --------------------------------------------------------------------------------- run

    def _start(self) -> Batcher:
        wake = threading.Condition()
        self.grabbers = [Grabber(s, wake, self._emit, self.rng) for s in self.sources]
        self.stats = StreamStats(self.grabbers, list(self.model.members))
        names = [s.name for s in self.sources]
        started: list[Sink] = []
        try:
            for sink in self.sinks:
                sink.start(names, list(self.model.members))
                started.append(sink)
        except BaseException:
            for sink in started:
                sink.close(ok=False)
            raise
        for e in self.errors:
            self._emit(Event("error", None, e))
        for g in self.grabbers:
            g.start()
        return Batcher(self.grabbers, wake, self.window_s, self.staleness_s)

    def _should_stop(self, t_start: float) -> None:
        if self.max_frames is not None and self.stats.frames >= self.max_frames:
            self.stop(f"max_frames {self.max_frames} reached")
        elif self.duration is not None and time.monotonic() - t_start >= self.duration:
            self.stop(f"duration {self.duration:g} s reached")
        elif any(s.stop_requested for s in self.sinks):
            self.stop("a sink asked to stop")

    def _tick(self, frames: list[Frame], batcher: Batcher) -> StreamBatch:
        t0 = time.monotonic()
        pred = self.model.predict(_as_batch(frames))
        t1 = time.monotonic()
        lat = self.stats.add(frames, frame_exit_stages(pred), t1, t1 - t0, getattr(pred, "tile_exit_stage", None))
        return self._publish(StreamBatch(frames, pred, results_for(frames, pred, lat, self.model)), batcher, t0, t1)

    def _publish(self, batch: StreamBatch, batcher: Batcher, t0: float, t1: float) -> StreamBatch:
        """Hand a tick's batch to every sink (with each source's fps so far) and record the tick's time."""
        elapsed = max(t1 - self.stats.start, 1e-9)
        fps = {name: n / elapsed for name, n in self.stats.processed.items()}
        for sink in self.sinks:
            sink.write(batch, fps)
        batcher.record_tick(time.monotonic() - t0)
        return batch

    def __iter__(self) -> Iterator[StreamBatch]:
        if not self.sources:
            raise SourceError("; ".join(self.errors))
        batcher = self._start()
        t_start = last_stats = time.monotonic()
        ok = False
        try:
            while not self._stop.is_set():
                frames = batcher.next_batch(self._stop)
                if frames is None:
                    break
                yield self._tick(frames, batcher)
                self._should_stop(t_start)
                if self.stats_every and time.monotonic() - last_stats >= self.stats_every:
                    last_stats = time.monotonic()
                    self._emit(Event("stats", None, "", self.stats.snapshot()))
            ok = True
        except (GeneratorExit, KeyboardInterrupt):
            ok = True  # the caller stopped early: a normal end, flush everything
            self.stop_reason = self.stop_reason or "interrupted"
            raise
        except SinkError as exc:  # one sink cannot write: stop, but keep what the others wrote
            ok = True
            self.stop_reason = self.stop_reason or str(exc)
            raise
        finally:
            self._finish(ok, batcher)
        if not self.stats.frames and all(g.state == "failed" for g in self.grabbers):
            raise SourceError("; ".join(self.failed))

    def _finish(self, ok: bool, batcher: Batcher) -> None:
        for g in self.grabbers:
            g.stop()
        deadline = time.monotonic() + JOIN_S
        for g in self.grabbers:
            g.join(max(0.0, deadline - time.monotonic()))
        if self.stop_reason:
            self._emit(Event("stop", None, self.stop_reason))
        self.summary = self.stats.snapshot()
        self.summary["collection_wait_s"] = round(batcher.wait_s, 3)
        self._emit(Event("summary", None, "", self.summary))
        errors = []
        for sink in self.sinks:
            try:
                sink.close(ok)
            except Exception as exc:  # one sink failing to flush must not keep the others from it
                errors.append(exc)
        if errors and ok:
            raise errors[0]

    def run(self) -> dict:
        """Iterate to the end; returns the summary (see :meth:`StreamStats.snapshot`)."""
        for _ in self:
            pass
        return self.summary

    def format_summary(self) -> str:
        return format_stats(self.summary or self.stats.snapshot(), "summary")


def stream(model, sources: Sequence[str | Source] | str, sinks: Iterable[str | Sink] = (), *,
           backend: str = "onnxrt", threads: int | None = None, **kwargs: Any) -> Iterator[StreamBatch]:
    """Classify frames from cameras, streams, files or folders; yields one :class:`StreamBatch`
    (per-frame results, at most one frame per source) per tick.

    ``model``: a loaded :class:`~edge_committee.runtime.CascadeModel` or a bundle folder (loaded
    with ``backend``/``threads`` and closed at the end). Other arguments: see
    :class:`StreamPipeline`. Example::

        for batch in ec.stream(model, ["rtsp://cam1/stream", "csi://0"]):
            for r in batch:
                print(r.source, r.frame_index, r.timestamp, r.label, r.confidence, r.exit_stage)
    """
    from edge_committee.stream.clips import pipeline_class  # a video model slides clips (``hop``)

    hop = kwargs.pop("hop", None)
    if isinstance(model, (str, os.PathLike)):
        from edge_committee.api import load

        with load(model, backend=backend, threads=threads) as loaded:
            yield from pipeline_class(loaded, hop)(loaded, sources, sinks, **kwargs)
        return
    yield from pipeline_class(model, hop)(model, sources, sinks, **kwargs)
