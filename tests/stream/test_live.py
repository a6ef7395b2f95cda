"""Live sources: bounded lag with a slow consumer, drops counted, reconnects, faults, bad input."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge_committee.stream import SourceError, StreamPipeline
from edge_committee.stream.sources.test import read_counter

#: the lag bound asserted below: a frame's capture-to-result latency with a consumer taking
#: 100 ms per frame from a 100 fps source. Latest-frame delivery makes it one source period
#: (10 ms) + one cascade call + thread scheduling, independent of how long the stream runs; a
#: queue would add 90 ms per frame (over 1 s after the 15 frames of this test).
LAG_BOUND_MS = 250.0
#: every live run below also stops after this long, whatever happens (so no test can hang)
BOUND_S = 30.0


def test_slow_consumer_lag_stays_bounded_and_drops_are_counted(model):
    pipe = StreamPipeline(model, ["test://counter?fps=100"], max_frames=15, duration=BOUND_S)
    results = []
    for batch in pipe:
        results += list(batch)
        # the frame's pixels are the frame the grabber numbered (nothing shuffled or stale)
        assert read_counter(batch.frames[0].image) == batch.frames[0].index
        time.sleep(0.1)  # a 10 fps cascade
    lat = np.array([r.latency_ms for r in results])
    assert len(results) == 15
    assert lat.max() < LAG_BOUND_MS, lat
    idx = [r.frame_index for r in results]
    assert idx == sorted(idx) and idx[-1] >= 15 * 5  # 100 fps in, 10 fps out: most frames skipped
    s = pipe.summary["sources"]["test://counter?fps=100"]
    assert s["processed"] == 15
    assert s["processed"] + s["dropped"] <= s["captured"] <= s["processed"] + s["dropped"] + 1
    assert sum(r.dropped for r in results) == idx[-1] + 1 - 15  # every skipped index is counted on a result


def test_every_policy_on_a_live_source_lags_instead(model):
    """The contrast: the same source with every frame delivered falls behind the camera."""
    pipe = StreamPipeline(model, ["test://counter?fps=100"], max_frames=12, frames="every", duration=BOUND_S)
    lat = []
    for batch in pipe:
        lat += [r.latency_ms for r in batch]
        time.sleep(0.1)
    assert pipe.summary["sources"]["test://counter?fps=100"]["dropped"] == 0
    assert np.median(lat[-5:]) > 250.0  # the queued frames wait their turn (at least 3 x 100 ms)


def _events(pipe_kwargs, model, sources, **kw):
    events = []
    pipe = StreamPipeline(model, sources, on_event=events.append, seed=0, duration=BOUND_S, **pipe_kwargs, **kw)
    results = [r for b in pipe for r in b]
    return pipe, results, events


def test_live_source_that_ends_is_reopened_with_backoff_and_jitter(model):
    uri = "test://counter?fps=200&count=5"
    pipe, results, events = _events({"max_frames": 18, "backoff": 0.05, "window_ms": 0}, model, [uri])
    kinds = [e.kind for e in events if e.source == uri]
    assert kinds[0] == "open" and kinds.count("eos") >= 3 and kinds.count("reconnect") >= 3
    # the numbering continues across connections, in order
    idx = [r.frame_index for r in results]
    assert idx == sorted(idx) and len(results) == 18
    delays = [e.data["delay_s"] for e in events if e.kind == "reconnecting"]
    assert all(0.05 * 0.75 <= d <= 0.05 * 1.25 for d in delays)  # each connection delivered frames: attempt 0
    assert pipe.summary["sources"][uri]["reconnects"] >= 3


def test_open_failures_back_off_exponentially_then_give_up(model):
    bad, good = "test://counter?fail_opens=50", "test://counter?fps=100&count=30&live=0"
    pipe, results, events = _events({"backoff": 0.02, "max_reconnects": 3, "window_ms": 0}, model, [bad, good])
    delays = [e.data["delay_s"] for e in events if e.kind == "reconnecting" and e.source == bad]
    assert len(delays) == 3
    for k, d in enumerate(delays):
        assert 0.02 * 2 ** k * 0.75 <= d <= 0.02 * 2 ** k * 1.25
    errors = [e.message for e in events if e.kind == "error" and e.source == bad]
    assert "gave up after 3 reconnect attempts" in errors[-1]
    # t3 LOW #21: the summary counts the attempts, not only the reopens that worked
    bad_summary = pipe.summary["sources"][bad]
    assert bad_summary["reconnects"] == 0 and bad_summary["reconnect_attempts"] == 3
    from edge_committee.stream.stats import format_stats

    assert "reconnects 0 of 3 attempts" in format_stats(pipe.summary)
    # the other source kept serving: all 30 frames of it
    assert [r.frame_index for r in results if r.source == good] == list(range(30))
    assert pipe.failed == [errors[-1]]


def test_stalled_source_times_out_and_reconnects(model):
    uri = "test://counter?fps=100&stall_after=4"
    _, _, events = _events({"max_frames": 10, "stall_timeout": 0.2, "backoff": 0.02}, model, [uri])
    kinds = [e.kind for e in events]
    assert kinds.count("stall") >= 2 and kinds.count("reconnect") >= 2
    assert "no frame for 0.2 s" in next(e.message for e in events if e.kind == "stall")


def test_bad_sources_are_one_line_each_and_others_keep_running(model, tmp_path):
    good = "test://counter?count=8&live=0&fps=0"
    events = []
    bad = ["foo://cam", str(tmp_path / "missing.mp4"), "v4l2:///dev/video97", "v4l2:///dev/video0?format=rgb565",
           "test://counter?fps=fast"]
    pipe = StreamPipeline(model, bad + [good], on_event=events.append, max_reconnects=1, backoff=0.01,
                          duration=BOUND_S)
    results = [r for b in pipe for r in b]
    assert [r.frame_index for r in results] == list(range(8))
    errors = pipe.failed
    assert len(errors) == len(bad)
    assert all("\n" not in e for e in errors)
    joined = " | ".join(errors)
    assert "unknown scheme 'foo'" in joined and "file://" in joined
    assert "no such file" in joined and "missing.mp4" in joined
    assert "no such device /dev/video97" in joined and "ls /dev/video*" in joined
    assert "unsupported pixel format" in joined and "mjpeg" in joined
    assert "fps='fast'" in joined
    assert sum(e.kind == "error" for e in events) >= len(bad)


def test_every_source_bad_raises(model, tmp_path):
    with pytest.raises(SourceError, match="unknown scheme"):
        list(StreamPipeline(model, ["foo://cam"]))
    with pytest.raises(SourceError, match="no such file"):
        list(StreamPipeline(model, [str(tmp_path / "nope.mp4")]))


def test_two_live_sources_share_ticks(model):
    uris = ["test://counter?fps=50", "test://counter?fps=50&size=32x32"]
    pipe = StreamPipeline(model, uris, max_frames=40, window_ms=40, duration=BOUND_S)
    batches = list(pipe)
    for b in batches:
        assert len({r.source for r in b}) == len(b)  # at most one frame per source per tick
    sizes = np.array([len(b) for b in batches])
    snap = pipe.summary
    assert snap["frames"] == sizes.sum() and snap["batches"] == len(batches)
    assert snap["stages"][0]["mean_batch"] == pytest.approx(sizes.mean(), abs=1e-3)
    assert snap["stages"][0]["fill"] == pytest.approx(sizes.mean() / 2, abs=1e-3)
    assert sizes.mean() > 1.3  # the window lets the second camera join most ticks
    stages = np.array([r.exit_stage for b in batches for r in b])
    assert [s["exits"] for s in snap["stages"]] == np.bincount(stages, minlength=len(model.members)).tolist()


def test_a_read_that_blocks_past_the_timeouts_is_warned_about_while_others_deliver(model):
    """OpenCV's GStreamer read has no timeout: the watchdog reports a source silent for longer
    than twice its stall timeout + 1 s, while the other source keeps the ticks going."""
    from edge_committee.stream.sources.base import SourceOptions
    from edge_committee.stream.sources.test import TestSource

    class Blocking(TestSource):
        def read(self):
            if self._generated == 3:
                time.sleep(2.6)  # stuck in a library call, no timeout of its own (bounded here)
            return super().read()

    stuck = Blocking("stuck://0", "counter", {"fps": 50.0}, SourceOptions(name="stuck", stall_timeout=0.5))
    pipe, results, events = _events({"max_frames": 400, "window_ms": 0}, model, [stuck, "test://counter?fps=100"])
    warnings = [e for e in events if e.kind == "warning" and e.source == "stuck"]
    assert len(warnings) == 1 and "no frame for 2 s (stall timeout 0.5 s)" in warnings[0].message
    assert sum(r.source == "stuck" for r in results) > 3  # it resumed after the blocking read
