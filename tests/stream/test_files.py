"""Files and folders: every frame, in order, and the same results as ``model.predict`` on them."""

from __future__ import annotations

import numpy as np
import pytest
from stream_helpers import decode_all, frames, write_video

import edge_committee as ec
from edge_committee.stream import StreamPipeline


def _collect(model, sources, **kw):
    batches = list(ec.stream(model, sources, **kw))
    return [r for b in batches for r in b], batches


def test_lossless_video_every_frame_equals_predict(model, tmp_path):
    images = frames(40)
    path = write_video(tmp_path / "clip.mkv", images, "ffv1")
    got, batches = _collect(model, [str(path)])
    assert [r.frame_index for r in got] == list(range(40))  # none lost, in order
    assert np.array_equal(np.concatenate([b.frames[0].image[None] for b in batches]), images)  # lossless
    ref = model.predict(images)
    assert [r.class_index for r in got] == ref.labels.tolist()
    assert [r.exit_stage for r in got] == ref.exit_stage.tolist()
    np.testing.assert_array_equal(np.array([r.confidence for r in got], np.float32), ref.confidence)
    assert all(r.dropped == 0 and r.source == str(path) for r in got)


def test_h264_file_matches_predict_on_the_decoded_frames(model, tmp_path):
    """H.264 is lossy: the reference is PyAV's own decode of the file; the pipeline must pass those
    pixels through unchanged (so results are equal, not merely close)."""
    images = frames(30, seed=6)
    path = write_video(tmp_path / "clip.mp4", images, "libx264")
    decoded = decode_all(path)
    assert len(decoded) == 30
    got, _ = _collect(model, ["file://" + str(path)])
    ref = model.predict(decoded)
    assert [r.frame_index for r in got] == list(range(30))
    assert [r.class_index for r in got] == ref.labels.tolist()
    np.testing.assert_array_equal(np.array([r.confidence for r in got], np.float32), ref.confidence)


def test_image_folder_and_glob_in_name_order(model, tmp_path):
    from PIL import Image

    images = frames(12, seed=7)
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / f"img_{i:03d}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    for uri in (str(tmp_path), str(tmp_path / "img_*.png")):
        got, _ = _collect(model, [uri])
        ref = model.predict(images)
        assert [r.frame_index for r in got] == list(range(12))
        assert [r.class_index for r in got] == ref.labels.tolist()


def test_two_files_batched_one_frame_per_source_per_tick(model, tmp_path):
    a, b = frames(20, seed=8), frames(12, seed=9)
    pa = write_video(tmp_path / "a.mkv", a, "ffv1")
    pb = write_video(tmp_path / "b.mkv", b, "ffv1")
    # a long window: the ticks wait for a file whose decoder is behind (or still opening on a busy machine)
    pipe = StreamPipeline(model, [str(pa), str(pb)], window_ms=2000)
    batches = list(pipe)
    for batch in batches:
        assert len({r.source for r in batch}) == len(batch) <= 2
    by_src = {s: [r for bt in batches for r in bt if r.source == s] for s in (str(pa), str(pb))}
    for s, imgs in ((str(pa), a), (str(pb), b)):
        rs = by_src[s]
        assert [r.frame_index for r in rs] == list(range(len(imgs)))
        assert [r.class_index for r in rs] == model.predict(imgs).labels.tolist()
    # both files are always ready, so every tick takes both until the shorter one ends
    sizes = [len(bt) for bt in batches]
    assert sizes == [2] * 12 + [1] * 8
    # per-stage figures: stage k ran on the frames with exit_stage >= k of each batch
    snap = pipe.summary
    stages = np.array([r.exit_stage for bt in batches for r in bt])
    for st in snap["stages"]:
        k = st["stage"]
        assert st["exits"] == int((stages == k).sum())
        rows = sum(sum(r.exit_stage >= k for r in bt) for bt in batches)
        runs = sum(any(r.exit_stage >= k for r in bt) for bt in batches)
        assert st["batches"] == runs
        assert st["mean_batch"] == pytest.approx(rows / runs if runs else 0.0, abs=1e-3)
    assert snap["stages"][0]["mean_batch"] == pytest.approx(32 / 20, abs=1e-3)
    assert snap["stages"][0]["fill"] == pytest.approx(32 / 20 / 2, abs=1e-3)
    assert snap["sources"][str(pa)]["state"] == "ended" and snap["sources"][str(pa)]["dropped"] == 0
