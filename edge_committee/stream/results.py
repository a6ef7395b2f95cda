"""Per-frame stream results for each task: :class:`~edge_committee.stream.types.FrameResult` for a
classifier, :class:`SegmentationResult` for a segmentation bundle (``task: segmentation``).

A tile cascade answers a class per pixel, not one label per frame, so its stream result is a
:class:`SegmentationResult`: the class map (for the overlay sinks, never written to JSON lines), the
pixels of each class (the histogram), and how many of the frame's tiles left the cascade at each
member (the tiles *deferred* are those that went past the first member). :func:`results_for`
picks the result builder for a prediction, so the pipeline stays one loop for every task.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_committee.stream.types import Frame, FrameResult


@dataclasses.dataclass
class SegmentationResult:
    """The tile cascade's answer for one frame (one ``type: frame`` JSON line, ``task: segmentation``)."""

    source: str
    frame_index: int
    timestamp: float  #: capture time, wall clock, s
    class_map: np.ndarray  #: (h, w) int32 class per pixel on the members' input grid (-1: no finite logits)
    label_names: list[str]
    histogram: np.ndarray  #: (C,) int64 pixels of each class in ``class_map``
    tile_exit_stage: np.ndarray  #: (T,) 0-based member each tile left after, row-major over ``tile_grid``
    tile_grid: tuple[int, int]  #: tiles per column and per row of the frame
    members: list[str]  #: the cascade's member names, in stage order
    confidence: float  #: mean tile confidence
    flags: int  #: tiles that some member gave non-finite logits
    latency_ms: float  #: capture to result, ms
    dropped: int  #: frames of this source dropped since its previous result
    pts: float | None = None

    @property
    def tiles(self) -> int:
        return int(self.tile_exit_stage.size)

    @property
    def tile_exits(self) -> np.ndarray:
        """(K,) tiles that left after each member."""
        return np.bincount(self.tile_exit_stage.ravel(), minlength=len(self.members))[: len(self.members)]

    @property
    def tiles_deferred(self) -> int:
        """Tiles that went past the first member (ran on a later member's window)."""
        return int((self.tile_exit_stage > 0).sum())

    @property
    def exit_stage(self) -> int:
        """The last stage any tile of the frame ran (0: the first member alone answered the frame)."""
        return int(self.tile_exit_stage.max()) if self.tile_exit_stage.size else 0

    def to_dict(self) -> dict:
        """The JSON-lines record: the histogram names the classes present (pixels > 0), in class order."""
        hist = {self.label_names[c]: int(n) for c, n in enumerate(self.histogram) if n}
        return {"type": "frame", "task": "segmentation", "source": self.source, "frame_index": self.frame_index,
                "timestamp": round(self.timestamp, 6), "pts": None if self.pts is None else round(self.pts, 6),
                "pixels": int(self.class_map.size), "histogram": hist, "tiles": self.tiles,
                "tiles_deferred": self.tiles_deferred,
                "tile_exits": dict(zip(self.members, (int(n) for n in self.tile_exits))),
                "exit_stage": self.exit_stage, "exit_member": self.members[self.exit_stage],
                "confidence": round(self.confidence, 6) if np.isfinite(self.confidence) else None,
                "flags": self.flags,
                "latency_ms": round(self.latency_ms, 3), "dropped": self.dropped}


def is_segmentation(pred) -> bool:
    return hasattr(pred, "tile_exit_stage")


def frame_exit_stages(pred) -> np.ndarray:
    """(N,) the stage each frame of a prediction left at: its own for a classifier, the last stage any of
    its tiles ran for a tile cascade (the stream's per-stage batch statistics count frames)."""
    if is_segmentation(pred):
        t = np.asarray(pred.tile_exit_stage)
        return t.max(axis=1) if t.shape[1] else np.zeros(len(t), np.int64)
    return np.asarray(pred.exit_stage)


def segmentation_results(frames: list[Frame], pred, lat_ms: list[float], model) -> list[SegmentationResult]:
    frame = tuple(model.preprocessing[0].size)
    grid = model.grid.shape(frame)
    hist = pred.histogram()
    return [SegmentationResult(f.source, f.index, f.timestamp, pred.labels[j], list(pred.label_names), hist[j],
                               np.asarray(pred.tile_exit_stage[j]), grid, list(model.members),
                               _mean_finite(pred.tile_confidence[j]), int(np.asarray(pred.tile_flags[j]).sum()),
                               lat_ms[j], f.dropped, f.pts)
            for j, f in enumerate(frames)]


def _mean_finite(values) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def classification_results(frames: list[Frame], pred, lat_ms: list[float], model) -> list[FrameResult]:
    names = pred.names()
    members = model.members
    return [FrameResult(f.source, f.index, f.timestamp, names[j], int(pred.labels[j]),
                        float(pred.confidence[j]), int(pred.exit_stage[j]), members[int(pred.exit_stage[j])],
                        int(pred.flags[j]), lat_ms[j], f.dropped, f.pts)
            for j, f in enumerate(frames)]


def results_for(frames: list[Frame], pred, lat_ms: list[float], model) -> list:
    """The per-frame results of one tick, whatever task the model solves."""
    build = segmentation_results if is_segmentation(pred) else classification_results
    return build(frames, pred, lat_ms, model)
