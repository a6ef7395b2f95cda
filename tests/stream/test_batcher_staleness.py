"""The batcher drops live frames older than ``staleness_s`` and counts them (t3 audit F15: the
mutation that disables the check passed every stream test). Fake grabbers, an injected clock."""

from __future__ import annotations

import threading

import numpy as np

from edge_committee.stream import batcher as batcher_mod
from edge_committee.stream.batcher import Batcher
from edge_committee.stream.types import Frame

NOW = 1000.0


class FakeGrabber:
    def __init__(self, name: str, policy: str, ages: list[float]) -> None:
        self.name, self.policy = name, policy
        self.frames = [Frame(name, i, np.zeros((2, 2, 3), np.uint8), 0.0, NOW - age) for i, age in enumerate(ages)]
        self.streaming, self.period, self.state = policy == "latest", None, "running"
        self.stale = 0

    def has_frame(self) -> bool:
        return bool(self.frames)

    def take(self):
        return self.frames.pop(0) if self.frames else None

    def count_stale(self) -> None:
        self.stale += 1

    def check(self, now: float) -> None:
        self.checks = getattr(self, "checks", 0) + 1

    @property
    def done(self) -> bool:
        return not self.frames


def _batch(grabbers, staleness_s, monkeypatch):
    monkeypatch.setattr(batcher_mod.time, "monotonic", lambda: NOW)
    b = Batcher(grabbers, threading.Condition(), window_s=0.0, staleness_s=staleness_s)
    return b.next_batch(threading.Event())


def test_stale_live_frames_are_dropped_and_counted(monkeypatch):
    old_cam, fresh_cam = FakeGrabber("cam0", "latest", [0.8]), FakeGrabber("cam1", "latest", [0.1])
    file_src = FakeGrabber("file", "every", [5.0])  # files and folders: never dropped for age
    frames = _batch([old_cam, fresh_cam, file_src], 0.5, monkeypatch)
    assert [f.source for f in frames] == ["cam1", "file"]
    assert (old_cam.stale, fresh_cam.stale, file_src.stale) == (1, 0, 0)


def test_the_boundary_and_zero_staleness(monkeypatch):
    at, past = FakeGrabber("at", "latest", [0.5]), FakeGrabber("past", "latest", [0.5 + 1e-6])
    frames = _batch([at, past], 0.5, monkeypatch)  # exactly staleness_s old is kept, older dropped
    assert [f.source for f in frames] == ["at"] and past.stale == 1
    ancient = FakeGrabber("cam", "latest", [3600.0])
    assert [f.source for f in _batch([ancient], 0.0, monkeypatch)] == ["cam"]  # 0 = never drop
    assert ancient.stale == 0


def test_a_tick_of_only_stale_frames_waits_for_a_fresh_one(monkeypatch):
    cam = FakeGrabber("cam", "latest", [2.0, 0.0])  # the stale one is dropped, the next one delivered
    frames = _batch([cam], 0.5, monkeypatch)
    assert [f.index for f in frames] == [1] and cam.stale == 1


def test_the_window_is_capped_by_the_fastest_live_period_minus_the_tick():
    live = FakeGrabber("cam", "latest", [])
    slow = FakeGrabber("cam2", "latest", [])
    files = FakeGrabber("file", "every", [])
    live.period, slow.period, files.period = 0.02, 0.1, 0.001  # a file's period never caps the window
    b = Batcher([live, slow, files], threading.Condition(), window_s=0.03)
    assert b.window() == 0.02
    b.record_tick(0.005)
    assert b.tick_s == 0.005 and abs(b.window() - 0.015) < 1e-12
    b.record_tick(0.015)  # smoothed: 0.8 * old + 0.2 * new
    assert abs(b.tick_s - 0.007) < 1e-12
    b.record_tick(1.0)
    assert b.window() == 0.0  # never negative
    live.streaming = slow.streaming = False  # reconnecting: no period counts
    assert b.window() == 0.03


def test_the_window_waits_for_streams_without_a_frame_but_not_past_its_end(monkeypatch):
    clock = {"t": NOW}
    monkeypatch.setattr(batcher_mod.time, "monotonic", lambda: clock["t"])

    class Cond:
        def wait(self, timeout):  # time passes only while the batcher waits
            clock["t"] += timeout

    ready, late = FakeGrabber("a", "latest", [0.0]), FakeGrabber("b", "latest", [])
    b = Batcher([ready, late], Cond(), window_s=0.03)
    b._collect(threading.Event())
    assert abs(b.wait_s - 0.03) < 1e-9  # waited the whole window for 'b'
    late.frames.append(Frame("b", 0, np.zeros((2, 2, 3), np.uint8), 0.0, clock["t"]))
    b._collect(threading.Event())
    assert abs(b.wait_s - 0.03) < 1e-9  # everyone has a frame: no wait
    opening = FakeGrabber("f", "every", [])
    opening.state = "opening"
    assert Batcher._pending(opening) and not Batcher._pending(ready)
    opening.state = "running"
    assert not Batcher._pending(opening)


def test_first_returns_false_when_every_source_is_done_or_stopped(monkeypatch):
    monkeypatch.setattr(batcher_mod.time, "monotonic", lambda: NOW)
    done = FakeGrabber("a", "every", [])
    done.state = "ended"
    b = Batcher([done], threading.Condition(), window_s=0.0)
    assert b.next_batch(threading.Event()) is None
    stop = threading.Event()
    stop.set()
    assert Batcher([FakeGrabber("b", "latest", [0.0])], threading.Condition()).next_batch(stop) is None


def test_one_tick_takes_every_sources_frame_whatever_the_order(monkeypatch):
    """A source without a frame, or with a stale one, does not end the tick for the others."""
    empty, stale, fresh = (FakeGrabber("empty", "latest", []), FakeGrabber("stale", "latest", [2.0]),
                           FakeGrabber("fresh", "latest", [0.0]))
    frames = _batch([empty, stale, fresh], 0.5, monkeypatch)
    assert [f.source for f in frames] == ["fresh"] and stale.stale == 1
    assert fresh.checks == 1  # one pass: the batch came from the first tick


def test_defaults_and_a_stop_is_noticed_within_a_poll(monkeypatch):
    import time

    class Silent(FakeGrabber):
        done = False  # a live source that never delivers

    b = Batcher([Silent("cam", "latest", [])], threading.Condition())
    assert (b.window_s, b.staleness_s) == (0.03, 0.5)  # the documented defaults
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    t0 = time.monotonic()
    assert b.next_batch(stop) is None
    assert time.monotonic() - t0 < 0.9  # POLL_S (0.05 s) bounds how long a stop goes unnoticed
