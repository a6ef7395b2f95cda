"""Sliding clips on sources (``edge_committee/stream/clips.py``): a video bundle classifies the last
``clip_frames`` frames of each source every ``hop`` frames, batching the clips due across sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edge_committee as ec
from edge_committee.errors import EdgeCommitteeError
from tests.video_helpers import make_clips, write_tiny_video

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """(video bundle, a 24-frame lossless video file, its frames (24, 32, 32))."""
    d = tmp_path_factory.mktemp("clips")
    ec.build(write_tiny_video(d, clips=60), d / "bundle", threads=1, log=lambda s: None)
    frames = make_clips(3, seed=5, clip=(8, 32, 32))[0].reshape(-1, 32, 32)
    path = d / "v.avi"
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=8)
        s.width, s.height, s.pix_fmt = 32, 32, "gray"
        for im in frames:
            out.mux(s.encode(av.VideoFrame.from_ndarray(im, format="gray")))
        out.mux(s.encode())
    return d / "bundle", path, frames


def test_sliding_clips_batch_across_sources_and_carry_the_latest_result(video):
    from edge_committee.stream.clips import WARMING_UP, ClipStreamPipeline

    bundle, path, frames = video
    with ec.load(bundle, threads=1) as model:
        calls = []
        predict = model.predict
        model.predict = lambda clips: (calls.append(len(clips)), predict(clips))[1]
        pipe = ClipStreamPipeline(model, [str(path), str(path)], hop=4)
        results = [r for batch in pipe for r in batch]
        model.predict = predict
        rgb = np.repeat(frames[..., None], 3, axis=-1)  # the file source decodes to RGB
        want = {end: predict(rgb[None, end - 7:end + 1]) for end in (7, 11, 15, 19, 23)}
    by_source: dict[str, list] = {}
    for r in results:
        by_source.setdefault(r.source, []).append(r)
    assert len(by_source) == 2 and all(len(v) == 24 for v in by_source.values())
    assert sum(calls) == 10 and max(calls) == 2  # 5 clips per source; clips due together go in one call
    assert pipe.clips_run == {s: 5 for s in by_source}
    for rows in by_source.values():
        rows.sort(key=lambda r: r.frame_index)
        assert all(r.label == WARMING_UP and r.class_index == -1 for r in rows[:7])
        for r in rows[7:]:
            end = 7 + 4 * ((r.frame_index - 7) // 4)  # the latest clip ending at or before this frame
            assert r.class_index == int(want[end].labels[0]) and r.exit_stage == int(want[end].exit_stage[0])
            assert r.confidence == pytest.approx(float(want[end].confidence[0]))
    assert pipe.summary["stages"][0]["exits"] + sum(s.get("exits", 0) for s in pipe.summary["stages"][1:]) == 10


def test_run_cli_slides_clips_on_a_video_bundle(video, tmp_path, capsys):
    from edge_committee.cli.main import main

    bundle, path, _ = video
    out = tmp_path / "r.jsonl"
    assert main(["run", str(bundle), "--source", str(path), "--clip-hop", "8", "--threads", "1",
                 "--sink", f"jsonl:{out}", "-q"]) == 0
    frames = [json.loads(line) for line in out.read_text().splitlines() if '"type": "frame"' in line]
    assert len(frames) == 24 and sum(f["label"] != "<warming up>" for f in frames) == 17
    assert main(["run", str(bundle), "--source", str(path), "--clip-hop", "0"]) == 1
    assert "--clip-hop 0" in capsys.readouterr().err


def test_clip_hop_needs_a_video_bundle(video):
    from edge_committee.stream.clips import ClipStreamPipeline, pipeline_class
    from edge_committee.stream.pipeline import StreamPipeline

    class Frames:  # a frame model: no clip_frames
        members, labels = ["m"], ["a", "b"]

    assert pipeline_class(Frames()) is StreamPipeline
    with pytest.raises(EdgeCommitteeError, match="--clip-hop applies to video bundles"):
        pipeline_class(Frames(), 4)
    with pytest.raises(EdgeCommitteeError, match="sliding clips need a video model"):
        ClipStreamPipeline(Frames(), [str(video[1])])


def test_ec_stream_slides_clips_for_a_video_bundle(video):
    bundle, path, _ = video
    results = [r for batch in ec.stream(str(bundle), [str(path)], threads=1, hop=8) for r in batch]
    assert len(results) == 24 and sum(r.class_index >= 0 for r in results) == 17  # clips end at frames 7, 15, 23
