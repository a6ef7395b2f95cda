"""Camera I/O as jetson-utils users expect it: credentials never shown, fail-fast for what cannot heal,
file timing and looping, and live outputs (udp://, rtp://, rtsp://) and inputs (udp://) checked
against peers on 127.0.0.1. Every peer is a subprocess stopped by its pid; every wait is bounded."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import av
import pytest
from stream_helpers import frames, write_video

from edge_committee.stream import StreamPipeline
from edge_committee.stream.types import redact

BOUND_S = 30.0
#: a PyAV receiver: decodes 10 frames of URL (in FORMAT) and prints "frames width height"
RECEIVER = """
import sys, av
url, fmt = sys.argv[1], sys.argv[2]
opts = {"rtsp_flags": "listen", "listen_timeout": "30"} if url.startswith("rtsp") else {"timeout": "20000000"}
c = av.open(url, format=None if fmt == "-" else fmt, options=opts, timeout=(30, 20))
n = 0
for f in c.decode(video=0):
    n += 1
    if n >= 10:
        break
print(n, f.width, f.height, flush=True)
"""


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> str:
    """The peer's output; killed by its pid if it is still running after the bound."""
    try:
        out, _ = proc.communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out


def test_redact_hides_every_password():
    assert redact("rtsp://admin:s3cret@10.0.0.5:554/live?x=1") == "rtsp://admin:***@10.0.0.5:554/live?x=1"
    assert redact("error (Connection refused: 'rtsp://a:b@h/p'); http://u:p@x") == \
        "error (Connection refused: 'rtsp://a:***@h/p'); http://u:***@x"
    assert redact("rtsp://cam/live and /a:b@c") == "rtsp://cam/live and /a:b@c"


def test_credentials_never_reach_results_events_or_errors(model, tmp_path):
    port = free_port()  # nothing listens there: connection refused
    uri = f"rtsp://admin:s3cret@127.0.0.1:{port}/live"
    events = []
    out = tmp_path / "r.jsonl"
    pipe = StreamPipeline(model, [uri, "test://counter?count=3&live=0&fps=0"], [f"jsonl:{out}"],
                          on_event=events.append, max_reconnects=1, backoff=0.01, open_timeout=2, duration=BOUND_S)
    results = [r for b in pipe for r in b]
    texts = [json.dumps([e.source, e.message]) for e in events] + pipe.failed + [out.read_text()]
    texts += [r.source for r in results] + [pipe.format_summary()]
    assert not any("s3cret" in t for t in texts)
    assert any(f"rtsp://admin:***@127.0.0.1:{port}/live" in t for t in pipe.failed)


@pytest.mark.parametrize("uri, message", [
    ("v4l2:///dev/video97", "no such device /dev/video97"),
    ("missing.mp4", "no such file"),
    ("csi://0", "has no GStreamer"),  # pip's OpenCV: CSI cameras cannot open, whatever the wait
])
def test_what_cannot_heal_fails_at_once(model, tmp_path, uri, message):
    """Default max_reconnects is 0 (forever): a missing device or file must still fail, at once."""
    uri = str(tmp_path / uri) if uri.endswith(".mp4") else uri
    events = []
    t0 = time.monotonic()
    pipe = StreamPipeline(model, [uri, "test://counter?count=4&live=0&fps=0"], on_event=events.append,
                          duration=BOUND_S)
    list(pipe)
    assert time.monotonic() - t0 < 10
    assert len(pipe.failed) == 1 and message in pipe.failed[0]
    assert not any(e.kind == "reconnecting" for e in events)


def test_cli_fails_fast_with_one_line(tiny_bundle, tmp_path):
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "edge_committee", "run", str(tiny_bundle), "--source",
                          "v4l2:///dev/video97", "--stats-every", "0", "-q"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and time.monotonic() - t0 < 30
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert errors and all("no such device /dev/video97" in e for e in errors), out.stderr


def test_file_loop_and_overlay_keep_the_source_timing(model, tmp_path):
    """A 2 s clip (50 frames at 25 fps) played 3 times: 150 frames, one 6 s overlay video."""
    clip = write_video(tmp_path / "clip.mkv", frames(50, seed=3), "ffv1", fps=25)
    vid = tmp_path / "overlay.mp4"
    pipe = StreamPipeline(model, [f"{clip}#loop=2"], [f"video:{vid}"], duration=BOUND_S)
    results = [r for b in pipe for r in b]
    assert [r.frame_index for r in results] == list(range(150))
    pts = [r.pts for r in results]
    assert all(b > a for a, b in zip(pts, pts[1:])) and pts[-1] == pytest.approx(149 / 25, abs=1e-6)
    with av.open(str(vid)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    # the span of the source's clock, not the processing time (a fragmented MP4 without an edit list may
    # start its first decoded frame a B-frame delay after 0, so the span is measured from the first frame)
    assert len(times) == 150 and times[-1] - times[0] == pytest.approx(149 / 25, abs=0.002)


@pytest.mark.parametrize("scheme, fmt", [("udp", "-"), ("rtp", "-"), ("rtsp", "rtsp")])
def test_live_outputs_reach_a_local_peer(tiny_bundle, tmp_path, scheme, fmt):
    """--sink udp:// / rtp:// (MPEG-TS) / rtsp://...#publish=1 (to a listening FFmpeg) on 127.0.0.1."""
    port = free_port(socket.SOCK_DGRAM if scheme != "rtsp" else socket.SOCK_STREAM)
    url = f"{scheme}://127.0.0.1:{port}" + ("/out" if scheme == "rtsp" else "")
    sink = url + ("#publish=1" if scheme == "rtsp" else "")
    peer = subprocess.Popen([sys.executable, "-c", RECEIVER, url, fmt], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)  # the peer binds its port
        run = subprocess.run([sys.executable, "-m", "edge_committee", "run", str(tiny_bundle), "--source",
                              "test://counter?fps=50&count=100&live=0", "--sink", sink, "--stats-every", "0", "-q"],
                             capture_output=True, text=True, timeout=60)
        got = stop(peer)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait(timeout=10)
    assert got.split()[:1] == ["10"], (got, run.stderr)
    # the overlay of a 48x64 counter frame, upscaled for legibility, arrives as H.264
    assert int(got.split()[1]) >= 64, got
    if scheme == "rtsp":  # the peer left after 10 frames: one line naming the sink, no traceback
        assert run.returncode in (0, 1) and "Traceback" not in run.stderr
    else:
        assert run.returncode == 0, run.stderr


#: an RTSP player (FFmpeg's client): retries until the server listens, decodes 10 frames, prints "frames w h"
PLAYER = """
import sys, time, av
deadline = time.monotonic() + 20
while True:
    try:
        c = av.open(sys.argv[1], options={} if sys.argv[2] == "auto" else {"rtsp_transport": "tcp"}, timeout=(10, 10))
        break
    except av.FFmpegError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.3)
n = 0
for f in c.decode(video=0):
    n += 1
    if n >= 10:
        break
print(n, f.width, f.height, flush=True)
"""


@pytest.mark.parametrize("transport", ["auto"])  # FFmpeg asks for UDP first, gets 461, takes TCP
def test_rtsp_output_is_served_to_a_player(tiny_bundle, transport):
    """--sink rtsp://127.0.0.1:PORT/out serves the overlay itself, as jetson-utils' rtsp://@:PORT/out."""
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/out"
    player = subprocess.Popen([sys.executable, "-c", PLAYER, url, transport], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        run = subprocess.run([sys.executable, "-m", "edge_committee", "run", str(tiny_bundle), "--source",
                              "test://counter?fps=50&count=300&live=0", "--sink", url, "--stats-every", "0", "-q"],
                             capture_output=True, text=True, timeout=60)
        got = stop(player)
    finally:
        if player.poll() is None:
            player.kill()
            player.wait(timeout=10)
    assert run.returncode == 0, run.stderr
    assert got.split()[:1] == ["10"] and int(got.split()[1]) >= 64, got


def test_rtsp_server_answers_the_protocol():
    """OPTIONS, a wrong path (404), UDP refused (461), TCP interleaved accepted; stop() is bounded."""
    from edge_committee.stream.sinks.rtsp_server import RtspServer

    server = RtspServer("127.0.0.1", 0, "/out").start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as c:
            def ask(req: str) -> str:
                c.sendall(req.encode())
                return c.recv(4096).decode()

            assert "Public: OPTIONS, DESCRIBE" in ask("OPTIONS rtsp://127.0.0.1/out RTSP/1.0\r\nCSeq: 1\r\n\r\n")
            assert ask("DESCRIBE rtsp://127.0.0.1/nope RTSP/1.0\r\nCSeq: 2\r\n\r\n").startswith("RTSP/1.0 404")
            sdp = ask("DESCRIBE rtsp://127.0.0.1/out RTSP/1.0\r\nCSeq: 3\r\n\r\n")
            assert "a=rtpmap:33 MP2T/90000" in sdp and "CSeq: 3" in sdp
            udp = "SETUP rtsp://127.0.0.1/out/track0 RTSP/1.0\r\nCSeq: 4\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"
            assert ask(udp).startswith("RTSP/1.0 461")
            tcp = "SETUP rtsp://127.0.0.1/out/track0 RTSP/1.0\r\nCSeq: 5\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n"
            assert "interleaved=0-1" in ask(tcp)
            assert ask("PLAY rtsp://127.0.0.1/out RTSP/1.0\r\nCSeq: 6\r\n\r\n").startswith("RTSP/1.0 200")
            deadline = time.monotonic() + 5
            while server.players == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            server.send(b"\x47" + bytes(187))
            packet = c.recv(4096)
            assert packet[:2] == b"$\x00" and packet[5] == 33  # interleaved channel 0, RTP payload type 33
    finally:
        t0 = time.monotonic()
        server.stop()
        assert time.monotonic() - t0 < 5


def test_udp_source_receives_a_stream(tiny_bundle, tmp_path):
    """--source udp://127.0.0.1:PORT (MPEG-TS, as --sink udp:// and ffmpeg -f mpegts send it)."""
    port = free_port(socket.SOCK_DGRAM)
    out = tmp_path / "rx.jsonl"
    rx = subprocess.Popen([sys.executable, "-m", "edge_committee", "run", str(tiny_bundle), "--source",
                           f"udp://127.0.0.1:{port}", "--sink", f"jsonl:{out}", "--max-frames", "10",
                           "--duration", "40", "--stats-every", "0", "-q"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    tx = None
    try:
        time.sleep(1.5)
        tx = subprocess.Popen([sys.executable, "-c", _SENDER, f"udp://127.0.0.1:{port}"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        log = stop(rx)
    finally:
        for p in (rx, tx):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    rows = [json.loads(ln) for ln in out.read_text().splitlines()] if out.exists() else []
    frames_rx = [r for r in rows if r.get("type") == "frame"]
    assert rx.returncode == 0 and len(frames_rx) == 10, log
    assert frames_rx[0]["source"] == f"udp://127.0.0.1:{port}"


#: sends counter frames as MPEG-TS/H.264 to URL for at most 20 s (bounded; stopped by pid sooner)
_SENDER = """
import sys, time, av, numpy as np
from fractions import Fraction
c = av.open(sys.argv[1], mode="w", format="mpegts")
s = c.add_stream("libx264", rate=25, options={"preset": "ultrafast", "tune": "zerolatency", "g": "10"})
s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
for i in range(500):
    img = np.full((48, 64, 3), (i * 7) % 256, np.uint8)
    f = av.VideoFrame.from_ndarray(img, format="rgb24")
    f.pts, f.time_base = i, Fraction(1, 25)
    for p in s.encode(f):
        c.mux(p)
    time.sleep(0.04)
c.close()
"""


def test_network_sink_refuses_a_malformed_address():
    from edge_committee.stream.sinks import make_sink
    from edge_committee.stream.types import SourceError

    with pytest.raises(SourceError, match=r"sink udp://a:\*\*\*@host: expected udp://HOST:PORT"):
        make_sink("udp://a:b@host")
    assert type(make_sink("rtp://127.0.0.1:5004")).__name__ == "NetworkSink"
