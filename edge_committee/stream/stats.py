"""Per-source and per-stage statistics of a running stream, printed periodically and at the end.

Per source: frames captured and processed, capture and processed fps, drops (overwritten by a
newer frame, or older than the staleness limit), reconnects, capture-to-result latency p50/p95.
Per stage: how many batches reached it, the mean batch it ran on (B_k: its *fill*, as a fraction
of the number of sources too) and how many frames exited there (from ``Prediction.exit_stage``).
For a tile cascade (segmentation) a frame counts at the last stage any of its tiles ran, and each
stage also counts the tiles that left after it (``tile_exits``).
"""

from __future__ import annotations

import collections
import time

import numpy as np

from edge_committee.stream.grabber import Grabber
from edge_committee.stream.types import Frame

#: latencies kept per source for the percentiles (the most recent ones)
LATENCY_WINDOW = 100_000


class StreamStats:
    """Accumulates what :meth:`add` is told about each processed batch.

    Args:
        grabbers: the pipeline's grabbers (their capture, drop and reconnect counters are read).
        stages: the cascade's member names, in stage order.
    """

    def __init__(self, grabbers: list[Grabber], stages: list[str]) -> None:
        self.grabbers = grabbers
        self.stages = stages
        self.start = time.monotonic()
        self.batches = 0
        self.frames = 0
        self.processed = collections.Counter()
        self.latency_ms: dict[str, collections.deque] = {
            g.name: collections.deque(maxlen=LATENCY_WINDOW) for g in grabbers}
        self.stage_runs = np.zeros(len(stages), np.int64)  # batches that ran stage k
        self.stage_rows = np.zeros(len(stages), np.int64)  # frames that ran stage k
        self.exits = np.zeros(len(stages), np.int64)
        self.infer_s = 0.0
        self.tile_exits: np.ndarray | None = None  #: (K,) tiles that left at each stage (tile cascades)

    def add(self, frames: list[Frame], exit_stage: np.ndarray, t_result: float, infer_s: float,
            tile_exit_stage: np.ndarray | None = None) -> list[float]:
        """Record one batch; returns each frame's capture-to-result latency in ms.

        ``exit_stage``: (N,) the stage each frame left at (for a tile cascade, the last stage any of
        its tiles ran); ``tile_exit_stage``: (N, T) a tile cascade's per-tile exit stages, counted
        per stage as ``tile_exits``."""
        self.batches += 1
        self.frames += len(frames)
        self.infer_s += infer_s
        lat = []
        for f in frames:
            ms = (t_result - f.t_mono) * 1e3
            lat.append(ms)
            self.processed[f.source] += 1
            self.latency_ms[f.source].append(ms)
        k = len(self.stages)
        stages = np.clip(np.asarray(exit_stage, np.int64), 0, k - 1)
        self.exits += np.bincount(stages, minlength=k)[:k]
        rows = np.array([(stages >= s).sum() for s in range(k)])  # frames still active at stage s
        self.stage_rows += rows
        self.stage_runs += rows > 0
        if tile_exit_stage is not None:
            t = np.clip(np.asarray(tile_exit_stage, np.int64).ravel(), 0, k - 1)
            if self.tile_exits is None:
                self.tile_exits = np.zeros(k, np.int64)
            self.tile_exits += np.bincount(t, minlength=k)[:k]
        return lat

    def snapshot(self) -> dict:
        """Everything as a JSON-able dict (the ``stats``/``summary`` event lines)."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        sources = {}
        for g in self.grabbers:
            lat = np.asarray(self.latency_ms[g.name], np.float64)
            sources[g.name] = {
                "state": g.state, "captured": g.captured, "processed": self.processed[g.name],
                "capture_fps": round(g.captured / elapsed, 2), "fps": round(self.processed[g.name] / elapsed, 2),
                "dropped": g.dropped + g.stale, "dropped_stale": g.stale, "reconnects": g.reconnects,
                "reconnect_attempts": getattr(g, "reconnect_attempts", g.reconnects),
                "latency_p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
                "latency_p95_ms": round(float(np.percentile(lat, 95)), 2) if lat.size else None,
            }
        n_src = max(len(self.grabbers), 1)
        stages = []
        for s, name in enumerate(self.stages):
            runs = int(self.stage_runs[s])
            mean = float(self.stage_rows[s]) / runs if runs else 0.0
            stages.append({"stage": s, "member": name, "batches": runs, "mean_batch": round(mean, 3),
                           "fill": round(mean / n_src, 3), "exits": int(self.exits[s])})
            if self.tile_exits is not None:  # a tile cascade: tiles that left after this member
                stages[-1]["tile_exits"] = int(self.tile_exits[s])
        return {"elapsed_s": round(elapsed, 3), "batches": self.batches, "frames": self.frames,
                "fps": round(self.frames / elapsed, 2), "infer_s": round(self.infer_s, 3),
                "sources": sources, "stages": stages}


def format_stats(snap: dict, title: str = "stats") -> str:
    """A short human table of a :meth:`StreamStats.snapshot`."""
    def ms(v):
        return "-" if v is None else f"{v:.1f}"

    lines = [(f"[{title}] {snap['elapsed_s']:.1f} s, {snap['frames']} frames in {snap['batches']} batches "
              f"({snap['fps']:.1f} fps)")]
    for name, s in snap["sources"].items():
        lines.append(f"  {name}: {s['state']}, {s['processed']}/{s['captured']} frames, {s['fps']:.1f} fps "
                     f"(capture {s['capture_fps']:.1f}), dropped {s['dropped']}, {_reconnects(s)}, "
                     f"latency p50 {ms(s['latency_p50_ms'])} ms p95 {ms(s['latency_p95_ms'])} ms")
    for st in snap["stages"]:
        lines.append(f"  stage {st['stage']} ({st['member']}): {st['batches']} batches, mean batch "
                     f"{st['mean_batch']:.2f} (fill {st['fill']:.0%}), exits {st['exits']}"
                     + (f", tiles exited {st['tile_exits']}" if "tile_exits" in st else ""))
    return "\n".join(lines)


def _reconnects(s: dict) -> str:
    """``reconnects N``, and the attempts when some failed (``reconnects 0 of 8 attempts``)."""
    tried = s.get("reconnect_attempts", s["reconnects"])
    return f"reconnects {s['reconnects']}" + (f" of {tried} attempts" if tried != s["reconnects"] else "")
