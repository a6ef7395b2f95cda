"""export-onnx on a video bundle: the clip cascade as one ONNX graph (each member's view gathered from the
clip, preprocessed, stacked as (n, C, frames, H, W)) equals the NumPy reference and ec.load(...).predict,
in both forms, from clips of the bundle's frame size and of another size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

import edge_committee as ec  # noqa: E402
from edge_committee.cascade.clips import ClipView, run_clip_cascade  # noqa: E402
from edge_committee.cli.main import main  # noqa: E402
from edge_committee.export.cascade_onnx import read_metadata  # noqa: E402
from edge_committee.spec.preprocess import Preprocessing  # noqa: E402
from tests.video_helpers import make_clips, write_tiny_video  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The tiny video committee, threshold 0.6: about half the clips go on to the large member."""
    from edge_committee.bundle import edit_bundle

    d = tmp_path_factory.mktemp("fusedclips")
    ec.build(write_tiny_video(d, clips=60), d / "bundle", threads=1, log=lambda s: None)
    with edit_bundle(d / "bundle") as ed:
        ed.manifest["cascade"].update(members=["small", "large"], thresholds=[0.6])
    return d / "bundle"


def _session(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run(path: Path, clips: np.ndarray) -> dict:
    s = _session(path)
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {"clips": clips})))


def _reference(bundle: Path, clips: np.ndarray):
    m = json.loads((bundle / "manifest.json").read_text())
    by = {e["name"]: e for e in m["members"]}
    names = m["cascade"]["members"]
    sessions = [_session(bundle / by[n]["file"]) for n in names]
    members = [lambda x, s=s: s.run(None, {"clip": x})[0] for s in sessions]
    return run_clip_cascade(clips, members, [ClipView(**by[n]["view"]) for n in names],
                            [Preprocessing.from_dict(by[n]["preprocessing"]) for n in names],
                            m["cascade"]["thresholds"])


@pytest.mark.parametrize("form", ["compact", "mask"])
def test_the_fused_clip_cascade_equals_the_reference(bundle, tmp_path, capsys, form):
    out = tmp_path / "cascade.onnx"
    assert main(["export-onnx", str(bundle), "--out", str(out), "--form", form]) == 0  # 8x8 gray: the clips' size
    clips = make_clips(60, seed=3)[0][..., None]
    got = _run(out, clips)
    ref = _reference(bundle, clips)
    assert 0 < (ref.exit_stage > 0).sum() < len(clips)  # both members answer some clips
    np.testing.assert_array_equal(got["labels"], ref.label)
    np.testing.assert_array_equal(got["exit_stage"], ref.exit_stage)
    np.testing.assert_array_equal(got["flags"], ref.flag)
    np.testing.assert_allclose(got["confidence"], ref.confidence, atol=1e-6)
    np.testing.assert_allclose(got["probs"], ref.probs, atol=1e-6)
    import onnx

    meta = read_metadata(onnx.load(str(out)))
    assert meta["input"] == "clips" and meta["clip_frames"] == 8 and meta["source"] == {
        "height": 8, "width": 8, "channels": 1}
    assert meta["views"] == [{"frames": 2, "stride": 4}, {"frames": 8, "stride": 1}]
    assert {k: v.shape for k, v in _run(out, clips[:0]).items()}["probs"] == (0, 3)  # an empty batch


def test_another_frame_size_equals_predict(bundle, tmp_path):
    out = tmp_path / "c.onnx"
    assert main(["export-onnx", str(bundle), "--out", str(out), "--source-size", "24x20x3"]) == 0
    gray = make_clips(40, seed=8, clip=(8, 20, 24))[0]
    clips = np.repeat(gray[..., None], 3, axis=-1)
    got = _run(out, clips)
    with ec.load(bundle, threads=1) as model:
        want = model.predict(clips)
    assert 0 < (want.exit_stage > 0).sum() < len(clips)
    np.testing.assert_array_equal(got["labels"], want.labels)
    np.testing.assert_array_equal(got["exit_stage"], want.exit_stage)
    np.testing.assert_allclose(got["probs"], want.probs, atol=1e-6)
    inputs = _session(out).get_inputs()
    assert [(i.name, i.shape[1:]) for i in inputs] == [("clips", [8, 20, 24, 3])]


def test_the_plugin_gate_is_refused_in_one_line(bundle, tmp_path, capsys):
    assert main(["export-onnx", str(bundle), "--out", str(tmp_path / "p.onnx"), "--gate", "plugin"]) == 1
    err = capsys.readouterr().err
    assert "a video bundle's fused file uses standard ONNX ops only" in err and err.count("\n") == 1
    assert not (tmp_path / "p.onnx").exists()


def test_into_the_bundle_and_dropped_when_select_chooses_again(bundle, tmp_path):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(bundle, root)
    assert main(["export-onnx", str(root), "--into-bundle"]) == 0
    fused = json.loads((root / "manifest.json").read_text())["fused_onnx"]
    assert [e["file"] for e in fused] == ["fused/cascade.8x8x1.compact.standard.onnx"]
    assert (root / fused[0]["file"]).is_file() and main(["inspect", str(root), "-q"]) == 0
    small = json.loads((root / "manifest.json").read_text())["members"][0]["macs"]
    assert main(["select", str(root), "--budget-macs", str(small), "--budget-kind", "mean"]) == 0
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["cascade"]["members"] == ["small"] and not manifest.get("fused_onnx")  # its thresholds are gone
    assert not (root / fused[0]["file"]).exists()
