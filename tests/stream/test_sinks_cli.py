"""Sinks (JSON lines, overlay video, display) and ``edge-committee run`` (exit codes, SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from stream_helpers import decode_all, frames, write_video

from edge_committee.cli.main import main
from edge_committee.stream import SourceError, StreamPipeline
from edge_committee.stream.sinks.overlay import upscale

FRAME_KEYS = {"type", "source", "frame_index", "timestamp", "pts", "label", "class", "confidence", "exit_stage",
              "exit_member", "flags", "latency_ms", "dropped"}


def _lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_jsonl_and_overlay_video_at_once(model, tmp_path):
    images = frames(16, seed=11)
    clip = write_video(tmp_path / "clip.mkv", images, "ffv1")
    out, vid = tmp_path / "r.jsonl", tmp_path / "overlay.mp4"
    pipe = StreamPipeline(model, [str(clip)], [f"jsonl:{out}", f"video:{vid}"])
    results = [r for b in pipe for r in b]
    lines = _lines(out)
    rows = [d for d in lines if d["type"] == "frame"]
    assert [d["frame_index"] for d in rows] == list(range(16))
    assert all(set(d) == FRAME_KEYS for d in rows)
    ref = model.predict(images)
    assert [d["class"] for d in rows] == ref.labels.tolist()
    assert [d["label"] for d in rows] == ref.names()
    assert [d["exit_member"] for d in rows] == [model.members[k] for k in ref.exit_stage]
    assert all(d["latency_ms"] >= 0 and d["timestamp"] > 1e9 for d in rows)
    events = [d["event"] for d in lines if d["type"] == "event"]
    assert events[0] == "open" and "end" in events and events[-1] == "summary"
    assert lines[-1]["sources"][str(clip)]["processed"] == 16
    # the overlay video: one frame per result, scaled up so the text is legible, text drawn
    assert not list(tmp_path.glob(".overlay*"))  # no temporary file left
    decoded = decode_all(vid)
    assert len(decoded) == len(results) == 16
    plain = upscale(images[0])
    assert decoded.shape[1:] == plain.shape
    box = (slice(0, plain.shape[0] // 6), slice(0, plain.shape[1] // 2))
    assert np.abs(decoded[0][box].astype(int) - plain[box]).mean() > 20  # the label box
    rest = (slice(plain.shape[0] // 2, None), slice(None))
    assert np.abs(decoded[0][rest].astype(int) - plain[rest]).mean() < 12  # the picture itself (H.264)


def test_several_sources_get_one_video_each(model, tmp_path):
    uris = ["test://counter?count=6&live=0&fps=0", "test://counter?count=4&live=0&fps=0&size=32x32"]
    list(StreamPipeline(model, uris, [f"video:{tmp_path / 'o.mp4'}"]))
    assert len(decode_all(tmp_path / "o-0.mp4")) == 6
    assert len(decode_all(tmp_path / "o-1.mp4")) == 4


def test_display_and_sink_mistakes_are_one_line(model, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SourceError, match="sink display: .*(no GUI|no display)"):
        list(StreamPipeline(model, ["test://counter?count=2&live=0"], ["display:"]))
    with pytest.raises(SourceError, match="expected KIND:TARGET"):
        StreamPipeline(model, ["test://counter"], ["mp4:x.mp4"])
    with pytest.raises(SourceError, match="does not exist"):
        list(StreamPipeline(model, ["test://counter?count=2&live=0"], [f"video:{tmp_path / 'no' / 'x.mp4'}"]))


def test_cli_run_file_to_jsonl_and_a_bad_source(tiny_bundle, tmp_path, capsys):
    images = frames(10, seed=12)
    clip = write_video(tmp_path / "clip.mkv", images, "ffv1")
    out = tmp_path / "r.jsonl"
    assert main(["run", "-q", str(tiny_bundle), "--source", str(clip), "--sink", f"jsonl:{out}",
                 "--threads", "1"]) == 0
    assert sum(d["type"] == "frame" for d in _lines(out)) == 10
    # a missing file next to a good source: one error line, the good source still runs, exit 1
    rc = main(["run", "-q", str(tiny_bundle), "--source", str(clip), "--source", str(tmp_path / "gone.mp4"),
               "--sink", f"jsonl:{out}"])
    assert rc == 1
    assert sum(d["type"] == "frame" for d in _lines(out)) == 10
    err = capsys.readouterr().err
    assert "gone.mp4" in err and "check the path" in err
    # only bad sources: the CLI's one-line error, exit 1
    assert main(["run", "-q", str(tiny_bundle), "--source", "ftp://x/y"]) == 1
    assert "error: source ftp://x/y: unknown scheme 'ftp'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_sigterm_stops_cleanly_and_flushes(tiny_bundle, tmp_path):
    out = tmp_path / "live.jsonl"
    cmd = [sys.executable, "-m", "edge_committee", "run", str(tiny_bundle), "--source", "test://counter?fps=50",
           "--sink", f"jsonl:{out}", "--stats-every", "0.5", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and '"event": "stats"' in out.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    lines = _lines(out)  # every line is whole JSON
    assert lines[-1]["event"] == "summary"
    assert any(d.get("event") == "stop" and "SIGTERM" in d["message"] for d in lines)
    assert any(d.get("event") == "stats" for d in lines)
    assert "[summary]" in err and "latency p50" in err
