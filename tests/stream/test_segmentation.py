"""``run`` and the stream pipeline on a segmentation bundle: JSON lines with class histograms and
deferred-tile counts, the class-map overlay with its legend on video sinks, the per-stage tile stats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from stream_helpers import decode_all, write_video

pytest.importorskip("onnxruntime")

from edge_committee.cli.main import main  # noqa: E402
from edge_committee.stream import StreamPipeline  # noqa: E402
from edge_committee.stream.sinks.overlay import upscale  # noqa: E402
from edge_committee.stream.sinks.seg_overlay import DEFERRED, blend, draw_segmentation, panel_width  # noqa: E402
from tests.dense_helpers import build_tiny_segmentation, make_frames  # noqa: E402

SCALE = 4  #: the tiny committee's 16x32 frames are sent as 64x128 RGB (codecs like sizes of 16 or more)
FRAME_KEYS = {"type", "task", "source", "frame_index", "timestamp", "pts", "pixels", "histogram", "tiles",
              "tiles_deferred", "tile_exits", "exit_stage", "exit_member", "confidence", "flags", "latency_ms",
              "dropped"}


@pytest.fixture(scope="module")
def seg_bundle(tmp_path_factory) -> Path:
    return build_tiny_segmentation(tmp_path_factory.mktemp("seg"))


@pytest.fixture(scope="module")
def seg_model(seg_bundle):
    import edge_committee as ec

    with ec.load(seg_bundle, threads=1) as m:
        yield m


def source_frames(n: int, seed: int = 7) -> np.ndarray:
    x, _ = make_frames(n, seed)
    x = x.repeat(SCALE, axis=1).repeat(SCALE, axis=2)
    return np.repeat(x[..., None], 3, axis=-1)


def _lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_jsonl_histograms_deferred_tiles_and_the_overlay_video(seg_model, tmp_path):
    images = source_frames(10)
    clip = write_video(tmp_path / "clip.mkv", images, "ffv1")
    out, vid = tmp_path / "r.jsonl", tmp_path / "overlay.mp4"
    pipe = StreamPipeline(seg_model, [str(clip)], [f"jsonl:{out}", f"video:{vid}"])
    results = [r for b in pipe for r in b]
    ref = seg_model.predict(images)
    deferred = (ref.tile_exit_stage > 0).sum(axis=1)
    assert 0 < deferred.sum() < ref.tile_exit_stage.size  # some tiles go to the large member, some do not
    lines = _lines(out)
    rows = [d for d in lines if d["type"] == "frame"]
    assert [d["frame_index"] for d in rows] == list(range(10))
    assert all(set(d) == FRAME_KEYS and d["task"] == "segmentation" for d in rows)
    hist = ref.histogram()
    for j, d in enumerate(rows):
        assert d["histogram"] == {seg_model.labels[c]: int(n) for c, n in enumerate(hist[j]) if n}
        assert d["pixels"] == 16 * 32 == sum(d["histogram"].values())
        assert d["tiles"] == 8 and d["tiles_deferred"] == deferred[j]
        assert d["tile_exits"] == {"small": 8 - deferred[j], "large": int(deferred[j])}
        assert d["exit_member"] == ("large" if deferred[j] else "small")
        assert d["confidence"] == pytest.approx(float(ref.tile_confidence[j].mean()), abs=1e-6)
    summary = lines[-1]
    assert summary["event"] == "summary"
    assert [s["tile_exits"] for s in summary["stages"]] == [80 - int(deferred.sum()), int(deferred.sum())]
    # the overlay: the class map blended in, the deferred tiles outlined, the legend panel at the right
    decoded = decode_all(vid)
    assert len(decoded) == len(results) == 10
    plain = upscale(images[0])
    h, w = plain.shape[:2]
    assert decoded.shape[1:] == (h, (w + panel_width(tuple(seg_model.labels), max(10, h // 16))) // 2 * 2, 3)
    want = blend(plain, ref.labels[0], len(seg_model.labels))
    inner = (slice(h // 4, 3 * h // 4), slice(w // 4, 3 * w // 4))
    assert np.abs(decoded[0][:, :w][inner].astype(int) - want[inner]).mean() < 12  # H.264 is lossy
    assert np.abs(want[inner].astype(int) - plain[inner]).mean() > 20  # and the colours do change the frame
    assert decoded[0][:, w + 4:].max() > 200  # the legend's text


def test_the_overlay_draws_what_the_result_says(seg_model, tmp_path):
    images = source_frames(3, seed=9)
    pipe = StreamPipeline(seg_model, [str(write_video(tmp_path / "c.mkv", images, "ffv1"))])
    results = [r for b in pipe for r in b]
    r = next(r for r in results if 0 < r.tiles_deferred < r.tiles)
    j = results.index(r)
    canvas = draw_segmentation(images[j], r, 25.0)
    plain = upscale(images[j])
    h, w = plain.shape[:2]
    picture = canvas[:, :w]
    want = blend(plain, r.class_map, len(r.label_names))
    rows, cols = r.tile_grid
    for t, stage in enumerate(r.tile_exit_stage):
        y0, x0 = t // cols * h // rows, t % cols * w // cols
        corner = tuple(picture[y0, x0])
        if stage > 0:
            assert corner == DEFERRED
        else:  # not outlined: the blended frame itself
            assert corner == tuple(want[y0, x0])
    outlined = np.zeros((h, w), bool)
    line = max(1, h // 120)
    for t in np.flatnonzero(r.tile_exit_stage > 0):
        y0, x0 = t // cols * h // rows, t % cols * w // cols
        outlined[y0:y0 + h // rows, x0:x0 + w // cols] = True
        outlined[y0 + line:y0 + h // rows - line, x0 + line:x0 + w // cols - line] = False
    np.testing.assert_array_equal(picture[~outlined], want[~outlined])
    assert (picture[outlined] == DEFERRED).all()
    # unlabelled pixels (class -1: no member gave finite logits) keep the frame's own colours
    cmap = r.class_map.copy()
    cmap[:4] = -1
    np.testing.assert_array_equal(blend(plain, cmap, len(r.label_names))[: 4 * SCALE], plain[: 4 * SCALE])


def test_cli_run_on_a_segmentation_bundle(seg_bundle, tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mkv", source_frames(6, seed=3), "ffv1")
    out = tmp_path / "r.jsonl"
    assert main(["run", str(seg_bundle), "--source", str(clip), "--sink", f"jsonl:{out}", "--threads", "1",
                 "--preprocess", "exact"]) == 0
    rows = [d for d in _lines(out) if d["type"] == "frame"]
    assert len(rows) == 6 and all(d["task"] == "segmentation" for d in rows)
    err = capsys.readouterr().err
    assert "stage 1 (large)" in err and "tiles exited" in err
    # a live generated source of another size and colour runs too (frames resized by the members' preprocessing)
    assert main(["run", "-q", str(seg_bundle), "--source", "test://counter?count=3&live=0&fps=0",
                 "--sink", f"jsonl:{out}", "--threads", "1"]) == 0
    assert sum(d["type"] == "frame" and d["pixels"] == 512 for d in _lines(out)) == 3
