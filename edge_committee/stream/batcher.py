"""Form one batch per tick from several grabbers (DeepStream ``nvstreammux`` style, with early exit
in mind: a bigger batch at stage 1 lets the gate compact the survivors for the later members).

Per tick: wait for the first frame of any source; then wait at most ``window_s`` more for the
other *streaming* sources that have nothing yet (a source that is reconnecting is never waited
for), and never longer than the fastest live source's frame period minus the time a tick takes
(both measured, smoothed), so that waiting for stragglers does not make a camera drop frames the
cascade had time for (roboflow's self-tuning collection window); take at most one frame per source (fairness: no camera starves the others); drop live
frames older than ``staleness_s`` and count them. Frames of ``every`` sources (files, folders)
are never dropped. Worst-case tick latency is therefore ``window_s`` + the cascade on the batch.
"""

from __future__ import annotations

import threading
import time

from edge_committee.stream.grabber import Grabber
from edge_committee.stream.types import Frame

#: how often a waiting batcher wakes up to check for stop and for stuck sources, s
POLL_S = 0.05


class Batcher:
    """Takes batches from ``grabbers`` (all sharing the condition ``wake``).

    Args:
        window_s: the collection window after the first frame of a tick, s (default 0.03).
        staleness_s: live frames older than this are dropped, s (default 0.5; 0 = never).
    """

    def __init__(self, grabbers: list[Grabber], wake: threading.Condition, window_s: float = 0.03,
                 staleness_s: float = 0.5) -> None:
        self.grabbers = grabbers
        self.wake = wake
        self.window_s = window_s
        self.staleness_s = staleness_s
        self.wait_s = 0.0  #: total time spent in collection windows, s
        self.tick_s = 0.0  #: smoothed time from a batch leaving to the next request (the cascade + sinks), s

    def record_tick(self, seconds: float) -> None:
        """The pipeline reports how long it took to process a batch."""
        self.tick_s = seconds if not self.tick_s else 0.8 * self.tick_s + 0.2 * seconds

    def window(self) -> float:
        """This tick's collection window, s: ``window_s``, capped by the live sources' frame period."""
        periods = [g.period for g in self.grabbers if g.policy == "latest" and g.streaming and g.period]
        if not periods:
            return self.window_s
        return max(0.0, min(self.window_s, min(periods) - self.tick_s))

    def _first(self, stop: threading.Event) -> bool:
        """Wait (holding ``wake``) until some grabber has a frame; False when stopped or all done."""
        while not stop.is_set():
            now = time.monotonic()
            for g in self.grabbers:  # every tick, so a stuck source is noticed while others deliver
                g.check(now)
            if any(g.has_frame() for g in self.grabbers):
                return True
            if all(g.done for g in self.grabbers):
                return False
            self.wake.wait(POLL_S)
        return False

    @staticmethod
    def _pending(g: Grabber) -> bool:
        """Whether the window waits for ``g``: it streams but has no frame yet, or it is a file or
        folder still opening (those open in milliseconds and never reconnect, so the first ticks of
        several files are full too; a live source that is opening or reconnecting is never waited for)."""
        if g.has_frame():
            return False
        return g.streaming or (g.policy == "every" and g.state == "opening")

    def _collect(self, stop: threading.Event) -> None:
        """Wait (holding ``wake``) up to the window for streaming sources with no frame yet."""
        start = time.monotonic()
        deadline = start + self.window()
        while not stop.is_set():
            if not any(self._pending(g) for g in self.grabbers):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.wake.wait(min(left, POLL_S))
        self.wait_s += time.monotonic() - start

    def next_batch(self, stop: threading.Event) -> list[Frame] | None:
        """The next batch (at least one frame), or None when every source is done or ``stop`` is set."""
        with self.wake:
            while True:
                if not self._first(stop):
                    return None
                self._collect(stop)
                now = time.monotonic()
                frames = []
                for g in self.grabbers:
                    frame = g.take()
                    if frame is None:
                        continue
                    if g.policy == "latest" and self.staleness_s and now - frame.t_mono > self.staleness_s:
                        g.count_stale()
                        continue
                    frames.append(frame)
                if frames:
                    return frames
