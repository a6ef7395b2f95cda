"""The fashion-streets segmentation example: the committed members build into a bundle whose ONNX
Runtime tile loop equals the NumPy reference on frames of the example's test split (a few frames,
generated here; nothing is trained)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("onnxruntime")
pytest.importorskip("PIL")

EXAMPLE = Path(__file__).parents[2] / "examples/fashion_streets"
DATA = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not (DATA / "t10k-images-idx3-ubyte.gz").is_file(),
                                reason="needs the Debian package dataset-fashion-mnist")


def _scenes():
    spec = importlib.util.spec_from_file_location("fashion_streets_scenes", EXAMPLE / "scenes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_members_are_small_dense_onnx_files():
    onnx = pytest.importorskip("onnx")
    for name in ("small", "large"):
        path = EXAMPLE / "members" / f"{name}.onnx"
        assert path.stat().st_size < 600_000
        model = onnx.load(str(path))
        dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert all(dims[i] for i in (0, 2, 3))  # dynamic batch, height and width


def test_generator_is_deterministic_and_splits_use_their_items():
    scenes = _scenes()
    a = scenes.make_split("test", 2, size=(64, 128))
    b = scenes.make_split("test", 2, size=(64, 128))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[1].max() <= 10 and (a[1] > 0).any() and a[0].dtype == np.uint8
    assert not np.array_equal(scenes.make_split("validation", 2, size=(64, 128))[0], a[0])


def test_example_builds_and_the_runtime_equals_the_reference(tmp_path: Path):
    import edge_committee as ec
    from edge_committee.cascade import tiles as T
    from edge_committee.spec import load_spec

    scenes = _scenes()
    for split, first in (("validation", 0), ("test", 0)):
        x, y = scenes.make_split(split, 3, first=first)
        np.savez(tmp_path / f"{split}.npz", x=x, y=y)
    d = yaml.safe_load((EXAMPLE / "committee.yaml").read_text())
    for m in d["members"]:
        m["onnx"] = str(EXAMPLE / m["onnx"])
    d["data"] = {k: {"format": "npz", "path": str(tmp_path / f"{k}.npz")} for k in ("validation", "test")}
    d["budget"] = {"macs": 2.2e8, "kind": "mean"}  # about half the large member's frame: a cascade with deferrals
    spec_path = tmp_path / "committee.yaml"
    spec_path.write_text(yaml.safe_dump(d, sort_keys=False))
    ec.build(spec_path, tmp_path / "bundle", threads=1, log=lambda s: None)
    spec = load_spec(spec_path)
    frames = np.load(tmp_path / "test.npz")["x"]
    with ec.load(tmp_path / "bundle", threads=1) as model:
        pred = model.predict(frames)
        thresholds = model.thresholds
        names = model.members
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = {m.name: ort.InferenceSession(str(m.onnx), opts, providers=["CPUExecutionProvider"]) for m in spec.members}
    run = {n: (lambda x, s=s: s.run(None, {"image": x})[0]) for n, s in sess.items()}
    x = spec.members[0].preprocessing(frames[..., None])
    grid = spec.segmentation.grid
    later = [lambda idx, n=n: run[n](grid.windows(x, idx)) for n in names[1:]]
    ref = T.run_tile_cascade(run[names[0]](x), later, grid, thresholds, "mean_max_prob", frame=(192, 384))
    np.testing.assert_array_equal(pred.labels, ref.labels)
    np.testing.assert_array_equal(pred.tile_exit_stage, ref.tile_exit_stage)
    assert pred.labels.shape == (3, 192, 384) and names == ["small", "large"]
    assert 0 < (pred.tile_exit_stage == 1).sum() < pred.tile_exit_stage.size
    # the export-onnx file of the same bundle: the same class maps and tile decisions
    from edge_committee.export.cascade_onnx.export import export_cascade_onnx

    (fused,) = export_cascade_onnx(tmp_path / "bundle", tmp_path / "fused.onnx")
    s = ort.InferenceSession(str(fused), opts, providers=["CPUExecutionProvider"])
    labels, exits = s.run(["class_map", "tile_exit_stage"], {"images": frames[..., None]})
    np.testing.assert_array_equal(labels, ref.labels)
    np.testing.assert_array_equal(exits, ref.tile_exit_stage)
