"""The fashion-actions video example: the committed members build into a bundle whose ONNX Runtime clip
loop equals the NumPy reference on clips of the example's test split (a slice, generated here;
nothing is trained)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("onnxruntime")
pytest.importorskip("PIL")

EXAMPLE = Path(__file__).parents[2] / "examples/fashion_actions"
DATA = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not (DATA / "t10k-images-idx3-ubyte.gz").is_file(),
                                reason="needs the Debian package dataset-fashion-mnist")


def _clips():
    spec = importlib.util.spec_from_file_location("fashion_actions_clips", EXAMPLE / "clips.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_members_are_small_onnx_files_taking_their_views():
    onnx = pytest.importorskip("onnx")
    from edge_committee.spec import load_spec

    spec = load_spec(EXAMPLE / "committee.yaml")
    for m in spec.members:
        assert m.onnx.stat().st_size < 1_000_000
        dims = [d.dim_param or d.dim_value for d in onnx.load(str(m.onnx)).graph.input[0].type.tensor_type.shape.dim]
        assert isinstance(dims[0], str) and dims[1:] == [1, m.view.frames, *m.preprocessing.size]
    small, large = spec.members
    assert small.view.frames * small.preprocessing.size[0] < large.view.frames * large.preprocessing.size[0]


def test_generator_is_deterministic_and_splits_use_their_items():
    clips = _clips()
    a = clips.make_split("test", 3)
    b = clips.make_split("test", 3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape == (3, 16, 64, 64) and a[0].dtype == np.uint8 and a[1].max() < len(clips.ACTIONS)
    assert not np.array_equal(clips.make_split("validation", 3)[0], a[0])
    x, y = clips.make_split("test", 40)
    assert len(set(y.tolist())) >= 6  # the actions are drawn evenly
    assert np.abs(np.diff(x.astype(np.int16), axis=1)).mean() > 1  # frames change over the clip


def test_example_builds_and_the_runtime_equals_the_reference(tmp_path: Path):
    import edge_committee as ec
    from edge_committee.cascade.clips import run_clip_cascade
    from edge_committee.spec import load_spec

    clips = _clips()
    for split in ("validation", "test"):
        x, y = clips.make_split(split, 48)
        np.savez(tmp_path / f"{split}.npz", x=x, y=y)
    d = yaml.safe_load((EXAMPLE / "committee.yaml").read_text())
    for m in d["members"]:
        m["onnx"] = str(EXAMPLE / m["onnx"])
    d["data"] = {k: {"format": "npz", "path": str(tmp_path / f"{k}.npz")} for k in ("validation", "test")}
    spec_path = tmp_path / "committee.yaml"
    spec_path.write_text(yaml.safe_dump(d, sort_keys=False))
    spec = load_spec(spec_path)
    small_macs, large_macs = 1.62e6, 5.19e7  # about, from the members' views (asserted below)
    d["budget"] = {"macs": small_macs + 0.3 * large_macs, "kind": "mean"}  # a cascade deferring ~30 %
    spec_path.write_text(yaml.safe_dump(d, sort_keys=False))
    manifest = ec.build(spec_path, tmp_path / "bundle", threads=1, log=lambda s: None)
    macs = [m["macs"] for m in manifest["members"]]
    assert macs[0] == pytest.approx(small_macs, rel=0.01) and macs[1] == pytest.approx(large_macs, rel=0.01)
    x = np.load(tmp_path / "test.npz")["x"]
    with ec.load(tmp_path / "bundle", threads=1) as model:
        assert model.members == ["small", "large"]
        pred = model.predict(x)
        thresholds = model.thresholds
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = [ort.InferenceSession(str(m.onnx), opts, providers=["CPUExecutionProvider"]) for m in spec.members]
    ref = run_clip_cascade(x[..., None], [lambda v, s=s: s.run(None, {"clip": v})[0] for s in sess],
                           [m.view for m in spec.members], [m.preprocessing for m in spec.members], thresholds)
    np.testing.assert_array_equal(pred.labels, ref.label)
    np.testing.assert_array_equal(pred.exit_stage, ref.exit_stage)
    np.testing.assert_allclose(pred.probs, ref.probs, atol=1e-5)
    assert 0 < (ref.exit_stage == 1).sum() < len(x)


def test_docs_tables_are_the_measured_json():
    """The README's and the benchmark doc's tables are what ``evaluate.py --table`` prints from the committed JSON."""
    import json

    spec = importlib.util.spec_from_file_location("fashion_actions_evaluate", EXAMPLE / "evaluate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    result = json.loads((EXAMPLE.parents[1] / "docs/video_benchmark.json").read_text())
    tables = [line for line in mod.markdown(result).splitlines() if line.startswith("|")]
    assert len(tables) == 10
    for doc in (EXAMPLE / "README.md", EXAMPLE.parents[1] / "docs/video_benchmark.md"):
        text = doc.read_text()
        missing = [line for line in tables if line not in text]
        assert not missing, f"{doc.name} disagrees with video_benchmark.json: {missing[0]}"
    c = result["accuracy"]["chosen"]["reach_large"]["test"]
    met = c["top1"] >= result["accuracy"]["top1"]["test"]["large"] and c["x_large"] <= 0.35  # the target
    verdict = "met on test" if met else "missed on test"
    assert verdict in (EXAMPLE / "README.md").read_text().replace("**", "").replace("\n  ", " ")
    assert result["check_bundle"]["label_mismatches"] == result["check_bundle"]["exit_mismatches"] == 0
