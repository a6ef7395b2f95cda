"""The video runtime (``ec.load(video bundle).predict``) equals the NumPy clip-cascade reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import edge_committee as ec  # noqa: E402
from edge_committee.cascade.clips import run_clip_cascade  # noqa: E402
from edge_committee.errors import EdgeCommitteeError  # noqa: E402
from edge_committee.spec import load_spec  # noqa: E402
from tests.video_helpers import make_clips, write_tiny_video  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("video")
    spec = write_tiny_video(d, clips=120)
    ec.build(spec, d / "bundle", threads=1, log=lambda s: None)
    return spec, d / "bundle"


def _sessions(spec):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = [ort.InferenceSession(str(m.onnx), opts, providers=["CPUExecutionProvider"]) for m in spec.members]
    return [lambda x, s=s: s.run(None, {"clip": x})[0] for s in sess]


@pytest.mark.parametrize("gate", ["auto", "numpy"])
def test_runtime_equals_the_reference(bundle, gate):
    spec_path, root = bundle
    spec = load_spec(spec_path)
    clips, _ = make_clips(150, seed=7)
    with ec.load(root, threads=1, gate=gate) as model:
        assert type(model).__name__ == "VideoModel" and model.members == ["small", "large"]
        pred = model.predict(clips)
        clips_run = list(model.executor.clips_run)
        thresholds = model.thresholds
    seen = []
    members = _sessions(spec)
    large = members[1]
    members[1] = lambda x: (seen.append(len(x)), large(x))[1]
    ref = run_clip_cascade(clips[..., None], members, [m.view for m in spec.members],
                           [m.preprocessing for m in spec.members], thresholds)
    np.testing.assert_array_equal(pred.labels, ref.label)
    np.testing.assert_array_equal(pred.exit_stage, ref.exit_stage)
    np.testing.assert_allclose(pred.probs, ref.probs, atol=1e-6)
    deferred = int((ref.exit_stage == 1).sum())
    assert 0 < deferred < len(clips)  # a real cascade: some clips exit early, some go on
    assert clips_run == [len(clips), deferred] and seen == [deferred]  # the large member saw survivors only


def test_predict_takes_arrays_lists_and_npy_files(bundle, tmp_path):
    _, root = bundle
    clips, _ = make_clips(10, seed=3)
    np.save(tmp_path / "clips.npy", clips)
    with ec.load(root, threads=1) as model:
        a = model.predict(clips)
        for other in (clips[..., None], list(clips), tmp_path / "clips.npy", str(tmp_path / "clips.npy")):
            b = model.predict(other)
            np.testing.assert_array_equal(a.labels, b.labels)
            np.testing.assert_array_equal(a.exit_stage, b.exit_stage)
        assert a.names()[0] in ("brighten", "darken", "flat")


@pytest.mark.parametrize("clips, match", [
    (np.zeros((2, 8, 8, 8), np.float32), "raw uint8 clips"),
    (np.zeros((2, 4, 8, 8), np.uint8), "clips of 4 frames; this committee's views span 8 frames"),
    (np.zeros((8, 8, 8), np.uint8), r"shape \(N, T, H, W\) or \(N, T, H, W, 1\|3\)"),
    (np.zeros((1, 8, 8, 8, 2), np.uint8), r"got \(1, 8, 8, 8, 2\)"),
    ([np.zeros((8, 8, 8), np.uint8), np.zeros((8, 6, 6), np.uint8)], "clips of different shapes"),
    ("missing.npy", "clip file not found"),
])
def test_bad_clips_are_one_line(bundle, clips, match):
    with ec.load(bundle[1], threads=1) as model, pytest.raises(EdgeCommitteeError, match=match) as err:
        model.predict(clips)
    assert "\n" not in str(err.value)


def test_predict_cuts_a_video_file_into_clips(bundle, tmp_path):
    av = pytest.importorskip("av")
    from edge_committee.runtime.clips import clips_from_video

    frames, _ = make_clips(3, seed=5, clip=(8, 32, 32))
    path = tmp_path / "clip.avi"
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=8)  # lossless: decoded frames equal the written ones
        s.width, s.height, s.pix_fmt = 32, 32, "gray"
        for im in frames.reshape(-1, 32, 32):
            out.mux(s.encode(av.VideoFrame.from_ndarray(im, format="gray")))
        out.mux(s.encode())
    clips, starts = clips_from_video(path, 8)
    assert clips.shape[:2] == (3, 8) and starts.tolist() == [0, 8, 16]
    np.testing.assert_array_equal(clips[..., :1].mean(-1), frames.astype(float))  # gray decoded as RGB
    assert clips_from_video(path, 8, hop=4)[1].tolist() == [0, 4, 8, 12, 16]
    with ec.load(bundle[1], threads=1) as model:
        np.testing.assert_array_equal(model.predict(path).labels, model.predict(clips).labels)
    with pytest.raises(EdgeCommitteeError, match="24 frames, fewer than one clip of 32"):
        clips_from_video(path, 32)


def test_cli_predicts_clips_and_reselects_a_video_bundle(tmp_path, capsys):
    import json
    import shutil

    from edge_committee.cli.main import main

    d = tmp_path / "v"
    d.mkdir()
    spec = write_tiny_video(d, clips=60)
    root = d / "bundle"
    ec.build(spec, root, threads=1, log=lambda s: None)
    clips, _ = make_clips(4, seed=9)
    np.save(tmp_path / "clips.npy", clips)
    with ec.load(root, threads=1) as model:
        want = model.predict(clips)
    capsys.readouterr()
    assert main(["predict", str(root), str(tmp_path / "clips.npy"), "--json", "--threads", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == [f"{tmp_path / 'clips.npy'}[{i}]" for i in range(4)]
    assert [r["class"] for r in rows] == want.labels.tolist()
    assert [r["exit_stage"] for r in rows] == want.exit_stage.tolist()
    # re-selection from the cached outputs: the small member alone within its own MACs
    small_macs = json.loads((root / "manifest.json").read_text())["members"][0]["macs"]
    assert main(["select", str(root), "--budget-macs", str(small_macs), "--budget-kind", "mean"]) == 0
    c = json.loads((root / "manifest.json").read_text())["cascade"]
    assert c["members"] == ["small"] and c["mean_cost"] == small_macs
    with ec.load(root, threads=1) as model:
        assert model.members == ["small"] and (model.predict(clips).exit_stage == 0).all()
    capsys.readouterr()
    assert main(["select", str(root), "--budget-ms", "3"]) == 1
    assert "re-selected by MACs per clip for now" in capsys.readouterr().err
    assert main(["profile", str(root)]) == 1
    err = capsys.readouterr().err
    assert "a video bundle; 'edge-committee profile' does not run it: a device profile times each member" in err
    assert "'edge-committee bench BUNDLE'" in err and err.count("\n") == 1
    shutil.rmtree(root)


def test_a_long_batch_runs_in_chunks_with_the_same_result(bundle, monkeypatch):
    from edge_committee.runtime import clips as C

    clips, _ = make_clips(30, seed=11)
    with ec.load(bundle[1], threads=1) as model:
        whole = model.predict(clips)
        whole_runs = list(model.executor.clips_run)
        monkeypatch.setattr(C, "CHUNK_VALUES", 7 * 8 * 8 * 8)  # 7 clips of the large member's view per call
        assert C.clips_per_call(model.views, model.preprocessing) == 7
        seen = []
        run = model.executor.run
        model.executor.run = lambda x: (seen.append(len(x)), run(x))[1]
        parts = model.predict(clips)
    assert seen == [7, 7, 7, 7, 2]
    for f in ("labels", "exit_stage", "flags"):
        np.testing.assert_array_equal(getattr(parts, f), getattr(whole, f))
    np.testing.assert_allclose(parts.probs, whole.probs, atol=1e-6)
    assert model.executor.clips_run == whole_runs  # summed over the chunks
