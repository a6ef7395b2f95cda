"""bench on a video bundle: the clip cascade end to end next to its largest and most accurate members, on
the bundle's test clips, an .npy of clips or a video file; what bench cannot do for clips is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import edge_committee as ec  # noqa: E402
from edge_committee.cli.main import main  # noqa: E402
from tests.video_helpers import make_clips, write_tiny_video  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(spec, bundle) of the tiny video committee, with a cascade that defers a good share of the clips."""
    from edge_committee.bundle import edit_bundle

    d = tmp_path_factory.mktemp("vbench")
    spec = write_tiny_video(d, clips=60)
    ec.build(spec, d / "bundle", threads=1, log=lambda s: None)
    with edit_bundle(d / "bundle") as ed:
        ed.manifest["cascade"].update(members=["small", "large"], thresholds=[0.8])
    return spec, d / "bundle"


def _rows(out: Path) -> dict:
    doc = json.loads((out / "bench.json").read_text())
    return doc, {(r["batch"], r["role"]): r for r in doc["results"]}


def test_bench_times_the_clip_cascade_and_the_members(built, tmp_path, capsys):
    spec, bundle = built
    out = tmp_path / "bench"
    assert main(["bench", "-q", str(bundle), "--batch", "1,8", "--warmup", "1", "--threads", "1",
                 "--out", str(out)]) == 0  # default source: the bundle's test split, as built
    said = capsys.readouterr().out
    assert "(video)" in said and "| clips/s |" in said and "MACs/clip (M)" in said
    doc, rows = _rows(out)
    manifest = json.loads((bundle / "manifest.json").read_text())
    macs = {m["name"]: m["macs"] for m in manifest["members"]}
    assert doc["task"] == "video" and doc["accuracy_metric"] == "top-1" and doc["images"] == 60
    assert {r for _, r in rows} == {"cascade", "largest & most accurate"} or {r for _, r in rows} == {
        "cascade", "largest", "most accurate"}
    x, y = np.load(Path(spec).parent / "test.npz").values()
    with ec.load(bundle, threads=1) as model:
        pred = model.predict(x)
    for b in (1, 8):
        cascade = rows[(b, "cascade")]
        large = next(r for (bb, role), r in rows.items() if bb == b and "largest" in role)
        n = cascade["images"]  # full batches only
        assert cascade["accuracy"] == pytest.approx(float(np.mean(pred.labels[:n] == y[:n])))
        share = float(np.mean(pred.exit_stage[:n] > 0))
        assert cascade["deferred"] == pytest.approx(share) and 0 < share < 1
        assert cascade["macs_per_clip"] == pytest.approx(macs["small"] + share * macs["large"])
        assert large["macs_per_clip"] == macs["large"] and large["exit_histogram"] == [n]
        assert cascade["images_per_s"] > 0 and cascade["calls"] == n // b  # clips/s: the bench schema's images_per_s
    assert (out / "bench.md").read_text().startswith(f"# Bench: {bundle} (video)")


def test_bench_reads_npy_clips_and_video_files(built, tmp_path):
    av = pytest.importorskip("av")
    _, bundle = built
    clips = make_clips(12, seed=4, clip=(8, 16, 16))[0]
    np.save(tmp_path / "c.npy", clips)
    assert main(["bench", "-q", str(bundle), "--source", str(tmp_path / "c.npy"), "--batch", "4", "--warmup", "0",
                 "--threads", "1", "--out", str(tmp_path / "b1")]) == 0
    _, rows = _rows(tmp_path / "b1")
    assert rows[(4, "cascade")]["images"] == 12 and "accuracy" not in rows[(4, "cascade")]  # no labels
    path = tmp_path / "v.avi"
    with av.open(str(path), "w") as f:
        s = f.add_stream("ffv1", rate=8)
        s.width, s.height, s.pix_fmt = 16, 16, "gray"
        for im in clips[:3].reshape(-1, 16, 16):
            f.mux(s.encode(av.VideoFrame.from_ndarray(im, format="gray")))
        f.mux(s.encode())
    assert main(["bench", "-q", str(bundle), "--source", str(path), "--batch", "1", "--warmup", "0",
                 "--threads", "1", "--out", str(tmp_path / "b2")]) == 0
    doc, rows = _rows(tmp_path / "b2")
    assert doc["images"] == 3 and rows[(1, "cascade")]["images"] == 3  # 24 frames: 3 consecutive clips of 8


@pytest.mark.parametrize("argv, why", [
    (["--profile", "x"], "--profile: a video bench has no cost-model predictions"),
    (["--source", "missing.npy"], "--source missing.npy: no such file"),
    (["--batch", "100"], "bench needs at least 100 images for batch size 100"),
])
def test_what_bench_cannot_do_is_one_line(built, tmp_path, capsys, argv, why):
    _, bundle = built
    assert main(["bench", "-q", str(bundle), "--out", str(tmp_path / "b"), "--warmup", "0", *argv]) == 1
    err = capsys.readouterr().err
    assert why in err and err.count("\n") == 1
