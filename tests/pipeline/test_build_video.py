"""``build`` of a video committee: MACs per clip from each member's view, outputs on the clips, selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("onnxruntime")

import edge_committee as ec  # noqa: E402
from edge_committee.errors import EdgeCommitteeError, SpecError  # noqa: E402
from tests.video_helpers import write_tiny_video  # noqa: E402


def edit(spec_path: Path, fn) -> Path:
    d = yaml.safe_load(spec_path.read_text())
    fn(d)
    spec_path.write_text(yaml.safe_dump(d, sort_keys=False))
    return spec_path


def test_build_records_views_macs_per_clip_and_outputs(tmp_path: Path):
    spec = write_tiny_video(tmp_path, clips=60)
    m = ec.build(spec, tmp_path / "b", threads=1, log=lambda s: None)
    assert m["task"] == "video" and m["video"] == {"clip_frames": 8}
    small, large = m["members"]
    # one Conv whose kernel covers the view: 3 outputs x (frames x size x size) MACs each
    assert (small["macs"], large["macs"]) == (3 * 2 * 4 * 4, 3 * 8 * 8 * 8)
    assert small["view"] == {"frames": 2, "stride": 4} and small["input_shape"] == [-1, 1, 2, 4, 4]
    c = m["cascade"]
    assert c["members"][-1] == "large" and c["cost_unit"] == "MACs" and c["mean_cost"] <= large["macs"]
    with np.load(tmp_path / "b" / "outputs.npz") as z:
        assert z["small/validation"].shape == (60, 3) and z["labels/test"].shape == (60,)
        acc = float(np.mean(z["large/validation"].argmax(1) == z["labels/validation"]))
    assert acc == pytest.approx(large["accuracy"]["validation"])
    report = (tmp_path / "b" / "report.md").read_text()
    assert "MACs per clip" in report and "small 2 frames stride 4 at 4x4" in report
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["task"] == "video"


def test_accuracy_target_largest_picks_the_cheapest_committee_reaching_it(tmp_path: Path):
    spec = edit(write_tiny_video(tmp_path, clips=200),
                lambda d: d.update(budget={"macs": "largest", "kind": "mean", "accuracy_target": "largest"}))
    m = ec.build(spec, tmp_path / "b", threads=1, log=lambda s: None)
    c, large = m["cascade"], m["members"][1]
    assert c["objective"] == "accuracy" and c["target_accuracy"] == pytest.approx(large["accuracy"]["validation"])
    assert c["val_accuracy"] >= large["accuracy"]["validation"] and c["mean_cost"] <= large["macs"]
    tight = edit(spec, lambda d: d["budget"].update(accuracy_target=1.0))
    with pytest.raises(EdgeCommitteeError, match="no candidate reaches the target"):
        ec.build(tight, tmp_path / "c", threads=1, log=lambda s: None)


@pytest.mark.parametrize("change, error, match", [
    (lambda d, p: d["video"].update(clip_frames=9), EdgeCommitteeError,
     "clips of 8 frames, but video.clip_frames is 9"),
    (lambda d, p: d["data"]["validation"].update(format="folder"), SpecError, "a video split is an npz file"),
    (lambda d, p: d["members"][0].update(onnx="large.onnx"), SpecError,
     r"input \[.batch., 1, 8, 8, 8\] does not take its view \[1, 1, 2, 4, 4\]"),
    (lambda d, p: d["budget"].update(accuracy_target="huge"), SpecError,
     "must be a top-1 in \\[0, 1\\], best_single or largest"),
    (lambda d, p: d.update(precision="int8"), SpecError, "builds in fp32 for now"),
    (lambda d, p: d.update(labels=["a", "b", "c", "d"]), SpecError,
     r"outputs \[None, 3\]; a video member outputs \(N, 4\)"),
    (lambda d, p: d["budget"].update(macs=None, latency_ms=3) or d["budget"].pop("macs"), SpecError,
     "chosen by MACs per clip"),
    (lambda d, p: np.savez(p / "val.npz", x=np.zeros((4, 8, 8, 8), np.uint8), y=np.full(4, 5)), SpecError,
     r"labels range over \[5, 5\] but the committee has 3 labels"),
    (lambda d, p: np.savez(p / "val.npz", x=np.zeros((4, 8, 8, 8), np.float32)), EdgeCommitteeError,
     "must be uint8 \\(N, T, H, W\\)"),
])
def test_bad_video_build_is_one_line(tmp_path: Path, change, error, match):
    spec = edit(write_tiny_video(tmp_path, clips=8), lambda d: change(d, tmp_path))
    with pytest.raises(error, match=match) as err:
        ec.build(spec, tmp_path / "b", threads=1, log=lambda s: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "b").exists()


def test_tampered_view_is_refused_on_load(tmp_path: Path):
    from edge_committee.bundle import finalize_manifest
    from edge_committee.errors import BundleError

    root = tmp_path / "b"
    ec.build(write_tiny_video(tmp_path, clips=20), root, threads=1, log=lambda s: None)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["members"][1]["view"] = {"frames": 8, "stride": 2}
    finalize_manifest(root, manifest)
    with pytest.raises(BundleError, match=r"members\[1\].view must be a view that fits in the clip of 8 frames"):
        ec.load(root)


def test_manifest_records_each_split_by_content(tmp_path: Path):
    spec = write_tiny_video(tmp_path, clips=12)
    a = ec.build(spec, tmp_path / "a", threads=1, log=lambda s: None)["data"]
    assert a["validation"]["clip_shape"] == [8, 8, 8, 1] and a["test"]["clips"] == 12
    assert a["validation"]["source"]["path"] == str((tmp_path / "val.npz").resolve())
    with np.load(tmp_path / "test.npz") as z:
        x, y = z["x"], z["y"]
    x[0, 0, 0, 0] ^= 1  # one grey level of one pixel
    np.savez(tmp_path / "test.npz", x=x, y=y)
    b = ec.build(spec, tmp_path / "b", threads=1, log=lambda s: None)["data"]
    assert b["validation"]["sha256"] == a["validation"]["sha256"] and b["test"]["sha256"] != a["test"]["sha256"]
