"""Sliding clips on live sources (``test://`` sources that pace frames like a camera and drop stale ones),
a ``type: clip`` JSON line per clip (label, confidence, exit stage, frame span) and the clip label on the
overlay. Every run stops after a bounded number of frames and seconds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import edge_committee as ec
from edge_committee.stream.clips import WARMING_UP, ClipStreamPipeline
from tests.video_helpers import LABELS, make_clips, write_tiny_video

av = pytest.importorskip("av")
#: every live run below also stops after this long, whatever happens (so no test can hang)
BOUND_S = 30.0


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """(video bundle deferring a good share of clips, frames.npy for test://array, its frames (40, 32, 32))."""
    from edge_committee.bundle import edit_bundle

    d = tmp_path_factory.mktemp("live")
    ec.build(write_tiny_video(d, clips=60), d / "bundle", threads=1, log=lambda s: None)
    with edit_bundle(d / "bundle") as ed:
        ed.manifest["cascade"].update(members=["small", "large"], thresholds=[0.8])
    frames = make_clips(5, seed=6, clip=(8, 32, 32))[0].reshape(-1, 32, 32)
    np.save(d / "frames.npy", frames)
    return d / "bundle", d / "frames.npy", frames


@pytest.mark.parametrize("policy", ["latest", "every"])
def test_clips_slide_over_a_live_source(live, policy):
    """Two live sources (a camera-paced array and a counter of another size); each clip's result is the
    cascade's on exactly the frames the window held, gaps from dropped frames included."""
    bundle, npy, frames = live
    uri = f"test://array?path={npy}&fps=200"
    clips, results = [], []
    with ec.load(bundle, threads=1) as model:
        pipe = ClipStreamPipeline(model, [uri, "test://counter?fps=50"], hop=4, frames=policy, max_frames=80,
                                  duration=BOUND_S)
        t_end = time.monotonic() + BOUND_S
        for batch in pipe:
            clips += batch.clips
            results += batch.results
            if policy == "latest":
                time.sleep(0.02)  # a slow consumer: the 200 fps source drops frames between ticks
            assert time.monotonic() < t_end
        mine = [c for c in clips if c.source == uri]
        assert len(mine) >= 3 and any(c.source != uri for c in clips)
        for c in mine:
            idx = np.asarray(c.frame_indices)
            assert len(idx) == 8 and (np.diff(idx) > 0).all() and c.span == (idx[0], idx[-1])
            want = model.predict(frames[idx % len(frames)][None, ..., None])  # the frames the source sent
            assert (c.class_index, c.exit_stage) == (int(want.labels[0]), int(want.exit_stage[0]))
            assert c.confidence == pytest.approx(float(want.confidence[0])) and c.label == LABELS[c.class_index]
    dropped = [c.dropped for c in mine]
    if policy == "every":
        assert dropped == [0] * len(mine) and all(c.span[1] - c.span[0] == 7 for c in mine)  # contiguous clips
    else:
        assert max(dropped) > 0  # clips of the latest frames: their spans are longer than 8 frames
    last = {}
    for r in (r for r in results if r.source == uri):
        if r.label == WARMING_UP:
            assert not last and r.clip_span is None
        else:  # every frame carries its source's latest clip
            assert r.clip_span is not None and r.clip_span[1] <= r.frame_index
            last[r.clip_span] = (r.class_index, r.exit_stage)
    assert last == {c.span: (c.class_index, c.exit_stage) for c in mine}


def test_run_writes_a_clip_line_per_clip_and_draws_the_clip_label(live, tmp_path):
    from edge_committee.cli.main import main

    bundle, npy, _ = live
    out, vid = tmp_path / "r.jsonl", tmp_path / "o.mp4"
    assert main(["run", str(bundle), "--source", f"test://array?path={npy}&fps=100", "--clip-hop", "4",
                 "--max-frames", "30", "--duration", str(BOUND_S), "--threads", "1", "--sink", f"jsonl:{out}",
                 "--sink", f"video:{vid}", "-q"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    frames = [d for d in lines if d["type"] == "frame"]
    clips = [d for d in lines if d["type"] == "clip"]
    assert len(frames) == 30 and len(clips) == 1 + (30 - 8) // 4
    for c in clips:
        assert c["frames"] == 8 and c["last_frame"] - c["first_frame"] + 1 == 8 + c["dropped_in_clip"]
        assert c["label"] == LABELS[c["class"]] and c["exit_stage"] in (0, 1) and 0 < c["confidence"] <= 1
        assert c["exit_member"] == ["small", "large"][c["exit_stage"]]
    spans = {(c["first_frame"], c["last_frame"]) for c in clips}
    assert {tuple(f["clip_span"]) for f in frames if "clip_span" in f} == spans
    assert sum("clip_span" not in f for f in frames) == 7  # warming up until the first window is full
    with av.open(str(vid)) as f:
        assert sum(1 for _ in f.decode(video=0)) == 30  # one overlay frame per frame


def test_the_overlay_shows_the_clip_label_and_its_frames(monkeypatch):
    from PIL import ImageDraw

    from edge_committee.stream.sinks.overlay import draw_overlay
    from edge_committee.stream.types import FrameResult

    drawn: list[str] = []
    text = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda self, xy, t, *a, **k: (drawn.append(t),
                                                                                  text(self, xy, t, *a, **k))[1])
    image = np.zeros((32, 32, 1), np.uint8)
    r = FrameResult("cam", 19, 0.0, "darken", 1, 0.93, 1, "large", 0, 12.0, 0, None, (12, 19))
    a = draw_overlay(image, r, 25.0)
    assert drawn[:3] == ["darken  0.93", "exit stage 1 (large)", "clip frames 12-19"]
    drawn.clear()
    b = draw_overlay(image, FrameResult("cam", 3, 0.0, WARMING_UP, -1, 0.0, 0, "small", 0, 1.0, 0), 25.0)
    assert drawn[0].startswith(WARMING_UP) and not any("clip frames" in t for t in drawn)
    assert a.shape == b.shape and (a != b).any()
