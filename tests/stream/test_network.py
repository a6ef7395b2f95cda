"""Network sources over loopback. RTSP: a camera killed and restarted, and one that freezes; the
pipeline reconnects and reports it, and keeps serving another source meanwhile. HTTP: a clip served
by a local HTTP server, reopened when it ends.

Two RTSP servers, both on 127.0.0.1 and stopped by pid:

- pure PyPI (always runs): FFmpeg's RTSP *listen* mode through PyAV: the pipeline's source
  ``rtsp://127.0.0.1:PORT/live#listen=1`` listens, and the test starts publishers
  (``rtsp_publisher.py``, PyAV's RTSP muxer) that push H.264 to it;
- the production pull path (DESCRIBE/PLAY) against GStreamer's gst-rtsp-server
  (``gst_rtsp_server.py`` under Debian's Python; skips without the Debian packages).
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_committee.stream import StreamPipeline
from edge_committee.stream.sources.test import read_counter

HERE = Path(__file__).resolve().parent
DEADLINE_S = 60.0  # the whole scenario; every wait below is bounded by it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Publisher:
    """``rtsp_publisher.py`` in a subprocess (at most ``seconds`` of frames), stopped by pid."""

    def __init__(self, url: str, seconds: float = 30.0) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, str(HERE / "rtsp_publisher.py"), url, str(seconds)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


class Run:
    """The pipeline iterated in a thread; results and events collected for the test to poll."""

    def __init__(self, model, sources, **kw) -> None:
        self.results, self.events = [], []
        self.lock = threading.Lock()
        self.pipe = StreamPipeline(model, sources, on_event=self._event, seed=0, **kw)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None
        self.t0 = time.monotonic()
        self.thread.start()

    def _event(self, e) -> None:
        with self.lock:
            self.events.append(e)

    def _run(self) -> None:
        try:
            for batch in self.pipe:
                with self.lock:
                    self.results += [(r, f.image) for r, f in zip(batch, batch.frames)]
        except BaseException as exc:  # reported by the test
            self.error = exc

    def wait_for(self, what: str, cond) -> None:
        while not cond():
            if time.monotonic() - self.t0 > DEADLINE_S or not self.thread.is_alive():
                raise AssertionError(f"timed out waiting for {what}; events: "
                                     f"{[(e.kind, e.message) for e in self.events]}")
            time.sleep(0.05)

    def count(self, kind: str, source: str) -> int:
        with self.lock:
            return sum(e.kind == kind and e.source == source for e in self.events)

    def frames_from(self, source: str) -> int:
        with self.lock:
            return sum(r.source == source for r, _ in self.results)

    def stop(self) -> None:
        self.pipe.stop("test done")
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.mark.slow
def test_rtsp_publisher_killed_restarted_and_frozen(model):
    url = f"rtsp://127.0.0.1:{_free_port()}/live"
    cam = url + "#listen=1"
    other = "test://counter?fps=20"
    run = Run(model, [cam, other], open_timeout=20, stall_timeout=1.0, backoff=0.1, window_ms=10)
    pubs = []
    try:
        pubs.append(Publisher(url))
        run.wait_for("frames from the first publisher", lambda: run.frames_from(cam) >= 10)
        pubs[-1].signal(signal.SIGKILL)  # the camera drops: the stream just ends
        run.wait_for("end of stream", lambda: run.count("eos", cam) >= 1)
        n_before = run.frames_from(cam)
        other_before = run.frames_from(other)
        pubs.append(Publisher(url))  # the camera comes back
        run.wait_for("reconnect", lambda: run.count("reconnect", cam) >= 1)
        run.wait_for("frames after the reconnect", lambda: run.frames_from(cam) >= n_before + 10)
        assert run.frames_from(other) > other_before  # the other source kept serving meanwhile

        stalls, reconnects = run.count("stall", cam), run.count("reconnect", cam)
        pubs[-1].signal(signal.SIGSTOP)  # the camera freezes with its connection open
        t_freeze = time.monotonic()
        run.wait_for("stall", lambda: run.count("stall", cam) > stalls)
        stall_after = time.monotonic() - t_freeze
        pubs[-1].stop()
        n_before = run.frames_from(cam)
        pubs.append(Publisher(url))
        run.wait_for("reconnect after the stall", lambda: run.count("reconnect", cam) > reconnects)
        run.wait_for("frames after the second reconnect", lambda: run.frames_from(cam) >= n_before + 5)
    finally:
        run.stop()
        for p in pubs:
            p.stop()
    assert run.error is None, run.error
    # FFmpeg reports a read timeout after about twice the read timeout (1 s here)
    timeline = [(round(e.time - run.events[0].time, 2), e.kind, e.message) for e in run.events]
    assert 0.9 <= stall_after <= 6.0, timeline
    snap = run.pipe.summary["sources"]
    assert snap[cam]["reconnects"] >= 2
    kinds = [e.kind for e in run.events if e.source == cam]
    assert "warning" not in kinds, timeline
    assert kinds[0] == "open" and "eos" in kinds and "stall" in kinds
    # every frame decoded is the frame it claims to be: the painted counter increases within a connection
    counters = [read_counter(im) for r, im in run.results if r.source == cam]
    assert counters[1] > counters[0]
    assert all(r.latency_ms < 1000 for r, _ in run.results if r.source == cam)


SYSTEM_PYTHON = "/usr/bin/python3"


def _gst_rtsp_server_missing() -> str | None:
    """Why gst_rtsp_server.py cannot run here, or None."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"no {SYSTEM_PYTHON}"
    code = ("import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer, Gst; "
            "Gst.init(None); assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')")
    try:
        subprocess.run([SYSTEM_PYTHON, "-c", code], check=True, capture_output=True, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return (f"gst-rtsp-server is not usable ({type(exc).__name__}); apt-get install python3-gi "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly")
    return None


class GstServer(Publisher):
    """gst_rtsp_server.py in a subprocess (at most 60 s), ready when it prints 'ready'."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(HERE / "gst_rtsp_server.py"), str(port), "60"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()  # bounded: the server exits after 60 s at the latest
        assert line.strip() == "ready", f"gst_rtsp_server.py did not start: {line!r}"


@pytest.mark.slow
def test_rtsp_pull_server_killed_restarted_and_frozen(model):
    reason = _gst_rtsp_server_missing()
    if reason:
        pytest.skip(reason)
    port = _free_port()
    cam, other = f"rtsp://127.0.0.1:{port}/test", "test://counter?fps=20"
    servers = [GstServer(port)]
    run = Run(model, [cam, other], open_timeout=2, stall_timeout=1.0, backoff=0.1, backoff_max=0.5, window_ms=10)
    try:
        run.wait_for("frames from the server", lambda: run.frames_from(cam) >= 10)
        servers[-1].signal(signal.SIGKILL)  # the camera drops
        run.wait_for("end of stream or stall", lambda: run.count("eos", cam) + run.count("stall", cam) >= 1)
        run.wait_for("a refused reopen", lambda: run.count("error", cam) >= 1)  # nothing listens now
        servers.append(GstServer(port))  # the camera comes back
        run.wait_for("reconnect", lambda: run.count("reconnect", cam) >= 1)
        n = run.frames_from(cam)
        run.wait_for("frames after the reconnect", lambda: run.frames_from(cam) >= n + 10)

        stalls, reconnects, other_before = run.count("stall", cam), run.count("reconnect", cam), run.frames_from(other)
        servers[-1].signal(signal.SIGSTOP)  # frozen: connections stay open, nothing answers
        run.wait_for("stall", lambda: run.count("stall", cam) > stalls)
        errors = run.count("error", cam)
        run.wait_for("an open timeout while frozen", lambda: run.count("error", cam) > errors)
        servers[-1].signal(signal.SIGCONT)
        run.wait_for("reconnect after the freeze", lambda: run.count("reconnect", cam) > reconnects)
        n = run.frames_from(cam)
        run.wait_for("frames after the freeze", lambda: run.frames_from(cam) >= n + 5)
        assert run.frames_from(other) > other_before  # the other source kept serving meanwhile
    finally:
        run.stop()
        for s in servers:
            s.stop()
    timeline = [(round(e.time - run.events[0].time, 2), e.kind, e.message) for e in run.events if e.source == cam]
    assert run.error is None, run.error
    assert run.pipe.summary["sources"][cam]["reconnects"] >= 2, timeline
    assert any("Connection refused" in m for _, k, m in timeline if k == "error"), timeline  # killed
    assert any("no answer within 2 s" in m for _, k, m in timeline if k == "error"), timeline  # frozen


def test_http_stream_every_frame_then_reopened_at_its_end(model, tmp_path):
    import numpy as np
    from stream_helpers import write_video

    from edge_committee.stream.sources.test import paint_counter

    n = 8
    write_video(tmp_path / "clip.mkv", np.stack([paint_counter(i) for i in range(n)]), "ffv1")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}/clip.mkv"
    events = []
    try:
        pipe = StreamPipeline(model, [uri], frames="every", max_frames=n + 3, duration=30, max_reconnects=3,
                              backoff=0.05, on_event=events.append, open_timeout=10, stall_timeout=5)
        got = [(r.frame_index, read_counter(f.image)) for b in pipe for r, f in zip(b, b.frames)]
    finally:
        server.shutdown()
        server.server_close()
    assert [c for _, c in got] == list(range(n)) + [0, 1, 2]  # every frame, then the reopened stream
    assert [i for i, _ in got] == list(range(n + 3))  # the source's numbering continues
    kinds = [e.kind for e in events]
    assert kinds.index("eos") < kinds.index("reconnect")
