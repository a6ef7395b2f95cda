"""Sliding clips on live sources: a video bundle classifies the last ``clip_frames`` frames of each source.

:class:`ClipStreamPipeline` is the stream pipeline (:class:`~edge_committee.stream.pipeline.StreamPipeline`:
sources, grabbers, batcher, sinks, stats) with one change at each tick: every frame joins its
source's window of the last ``clip_frames`` frames; a source whose window is full runs a clip every
``hop`` frames (default half a clip; its first full window runs at once), and the clips due in a
tick go to the video model in one ``predict`` call (one per frame size), so the clip cascade
batches across sources. Each frame's result is the result of its source's latest clip (the one
ending at that frame, or the last one before it); frames before a source's first full window are
reported as ``<warming up>`` (class -1, confidence 0); the others carry their clip's frame span
(``clip_span``). Every clip classified is also a :class:`~edge_committee.stream.types.ClipResult` in
its tick's ``StreamBatch.clips`` (a ``type: clip`` JSON line: label, confidence, exit stage, frame
span, frames a live source dropped within it). On a live source that delivers the latest frame only,
a clip is the last ``clip_frames`` frames *delivered*, so its span can be longer than ``clip_frames``
(``dropped_in_clip``); ``--frames every`` keeps clips contiguous while the cascade keeps up. The
per-stage stats (batches, exits) count clips; the per-source ones (fps, latency) count frames.
"""

from __future__ import annotations

import collections
import functools
import time
from typing import Any

import numpy as np

from edge_committee.errors import EdgeCommitteeError
from edge_committee.stream.pipeline import StreamPipeline
from edge_committee.stream.types import ClipResult, Frame, FrameResult, StreamBatch

WARMING_UP = "<warming up>"


class ClipStreamPipeline(StreamPipeline):
    """The stream pipeline over sliding clips of a video model (see the module docstring).

    Args:
        model: a loaded :class:`~edge_committee.runtime.clips.VideoModel` (``predict(clips)``,
            ``clip_frames``, ``members``, ``labels``).
        hop: frames between two clips of one source (default ``clip_frames // 2``, at least 1).
        Other arguments: see :class:`StreamPipeline`.
    """

    def __init__(self, model, sources, sinks=(), *, hop: int | None = None, **kwargs: Any) -> None:
        clip_frames = int(getattr(model, "clip_frames", 0))
        if clip_frames < 1:
            raise EdgeCommitteeError("sliding clips need a video model (a bundle built with task: video)")
        hop = max(1, clip_frames // 2) if hop is None else hop
        if isinstance(hop, bool) or not isinstance(hop, int) or hop < 1:
            raise EdgeCommitteeError(f"clip hop {hop!r} must be an integer >= 1 (frames between two clips)")
        super().__init__(model, sources, sinks, **kwargs)
        self.clip_frames, self.hop = clip_frames, hop
        self._windows: dict[str, collections.deque] = {}
        self._since: dict[str, int] = {}
        #: source -> (class, confidence, exit stage, flag, frame indices) of its latest clip
        self._last: dict[str, tuple] = {}
        #: clips classified so far, per source
        self.clips_run: dict[str, int] = collections.Counter()

    def _due(self, frames: list[Frame]) -> list[int]:
        """Indices of the frames that complete a clip to classify now (their windows updated)."""
        due = []
        for j, f in enumerate(frames):
            win = self._windows.setdefault(f.source, collections.deque(maxlen=self.clip_frames))
            if win and win[-1].image.shape != f.image.shape:
                win.clear()  # the source changed its frame size (a reconnect): start a new window
            win.append(f)
            self._since[f.source] = self._since.get(f.source, self.hop - 1) + 1
            if len(win) == self.clip_frames and self._since[f.source] >= self.hop:
                self._since[f.source] = 0
                due.append(j)
        return due

    def _classify(self, frames: list[Frame], due: list[int]) -> tuple[np.ndarray, dict[int, tuple]]:
        """Run the due clips (one predict call per frame size), remember each source's result; returns the
        clips' exit stages and, per due frame, (class, confidence, exit stage, flag, frame indices of its clip)."""
        stages, done = [], {}
        by_shape: dict[tuple, list[int]] = {}
        for j in due:
            by_shape.setdefault(frames[j].image.shape, []).append(j)
        for group in by_shape.values():
            windows = [list(self._windows[frames[j].source]) for j in group]
            pred = self.model.predict(np.stack([np.stack([f.image for f in w]) for w in windows]))
            for i, (j, w) in enumerate(zip(group, windows)):
                src = frames[j].source
                done[j] = (int(pred.labels[i]), float(pred.confidence[i]), int(pred.exit_stage[i]),
                           int(pred.flags[i]), tuple(f.index for f in w))
                self._last[src] = done[j]
                self.clips_run[src] += 1
            stages.append(pred.exit_stage)
        return (np.concatenate(stages) if stages else np.zeros(0, np.int32)), done

    def _tick(self, frames: list[Frame], batcher) -> StreamBatch:
        t0 = time.monotonic()
        clip_stages, done = self._classify(frames, self._due(frames))
        t1 = time.monotonic()
        rows = [self._last.get(f.source, (-1, 0.0, 0, 0, None)) for f in frames]
        exit_stage = np.array([r[2] for r in rows], np.int32)
        lat = self.stats.add(frames, clip_stages, t1, t1 - t0)  # stage counts are per clip, not per frame
        labels, members = list(self.model.labels), list(self.model.members)
        results = [FrameResult(f.source, f.index, f.timestamp, labels[c] if c >= 0 else WARMING_UP, c, conf,
                               stage, members[stage], flag, lat[j], f.dropped, f.pts,
                               None if idx is None else (idx[0], idx[-1]))
                   for j, (f, (c, conf, stage, flag, idx)) in enumerate(zip(frames, rows))]
        clips = [ClipResult(frames[j].source, idx, frames[j].timestamp, labels[c] if c >= 0 else "<invalid>", c, conf,
                            stage, members[stage], flag, lat[j])
                 for j, (c, conf, stage, flag, idx) in sorted(done.items())]
        pred = _FramePrediction(np.array([r[0] for r in rows], np.int32), np.array([r[1] for r in rows], np.float32),
                                exit_stage, np.array([r[3] for r in rows], np.int32), labels)
        return self._publish(StreamBatch(frames, pred, results, clips), batcher, t0, t1)


def pipeline_class(model, hop: int | None = None):
    """What ``run`` builds for ``model``: :class:`ClipStreamPipeline` (with ``hop``) for a video model, else the
    frame pipeline."""
    if getattr(model, "clip_frames", None):
        return functools.partial(ClipStreamPipeline, hop=hop)
    if hop is not None:
        raise EdgeCommitteeError("--clip-hop applies to video bundles (task: video) only; drop it")
    return StreamPipeline


class _FramePrediction:
    """Per-frame view of the latest clip results (what sinks read from ``StreamBatch.prediction``)."""

    def __init__(self, labels: np.ndarray, confidence: np.ndarray, exit_stage: np.ndarray, flags: np.ndarray,
                 label_names: list[str]) -> None:
        self.labels, self.confidence, self.exit_stage, self.flags = labels, confidence, exit_stage, flags
        self.label_names = label_names

    def names(self) -> list[str]:
        return [self.label_names[i] if i >= 0 else WARMING_UP for i in self.labels]
