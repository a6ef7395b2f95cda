"""Building a segmentation committee: what is refused, in one line, before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("onnxruntime")

import edge_committee as ec  # noqa: E402
from edge_committee.errors import EdgeCommitteeError  # noqa: E402
from tests.dense_helpers import write_tiny_segmentation  # noqa: E402


def _edit(path: Path, fn) -> Path:
    d = yaml.safe_load(path.read_text())
    fn(d)
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _fix_height_width(path: Path) -> None:
    import onnx

    model = onnx.load(str(path))
    for i, v in ((2, 16), (3, 32)):
        model.graph.input[0].type.tensor_type.shape.dim[i].dim_value = v
    onnx.save(model, str(path))


@pytest.mark.parametrize("change, match", [
    (lambda d: d.update(precision="fp16"), "builds in fp32 for now"),
    (lambda d: d.update(budget={"latency_ms": 5}), "chosen by MACs per frame for now"),
    (lambda d: d["data"].update(validation={"format": "idx", "images": "x.gz"}), "use format: npz"),
    (lambda d: d.update(budget={"macs": 10, "kind": "mean"}), "below every candidate"),
    (lambda d: d.update(budget={"macs": 1.0e+6, "kind": "mean", "accuracy_target": "most"}),
     "must be a mIoU in \\[0, 1\\], best_single or largest_tiled"),
])
def test_refused_in_one_line(tmp_path: Path, change, match):
    spec = _edit(write_tiny_segmentation(tmp_path), change)
    with pytest.raises(EdgeCommitteeError, match=match) as err:
        ec.build(spec, tmp_path / "bundle", log=lambda s: None, threads=1)
    assert "\n" not in str(err.value) and not (tmp_path / "bundle").exists()


def test_a_member_with_a_fixed_input_size_is_refused(tmp_path: Path):
    spec = write_tiny_segmentation(tmp_path)
    _fix_height_width(tmp_path / "large.onnx")
    with pytest.raises(EdgeCommitteeError, match="needs a dynamic height and width"):
        ec.build(spec, tmp_path / "bundle", log=lambda s: None, threads=1)


def test_class_maps_must_match_the_frames(tmp_path: Path):
    spec = write_tiny_segmentation(tmp_path)
    z = np.load(tmp_path / "val.npz")
    np.savez(tmp_path / "val.npz", x=z["x"], y=z["y"][:, :8])
    with pytest.raises(EdgeCommitteeError, match="class maps 'y' must be integers of shape"):
        ec.build(spec, tmp_path / "bundle", log=lambda s: None, threads=1)


def test_accuracy_target_largest_tiled_picks_the_cheapest_reaching_it(tmp_path: Path):
    spec = _edit(write_tiny_segmentation(tmp_path),
                 lambda d: d.update(budget={"macs": "largest", "kind": "mean", "accuracy_target": "largest_tiled"}))
    m = ec.build(spec, tmp_path / "bundle", log=lambda s: None, threads=1)
    c, large = m["cascade"], m["members"][1]
    assert c["objective"] == "accuracy" and c["val_accuracy"] >= large["tiled_accuracy"]["validation"]
    assert c["target_accuracy"] == pytest.approx(large["tiled_accuracy"]["validation"])


def test_three_members_build_with_the_grid_search(tmp_path: Path):
    from tests.dense_helpers import seg_member

    def add(d):
        d["members"].insert(1, {"name": "medium", "onnx": "medium.onnx", "preprocessing": dict(d["members"][0]["preprocessing"])})
        d["selection"] = {"max_members": 3}

    spec = _edit(write_tiny_segmentation(tmp_path), add)
    seg_member(tmp_path / "medium.onnx", "small", seed=5)
    m = ec.build(spec, tmp_path / "bundle", log=lambda s: None, threads=1)
    assert len(m["members"]) == 3 and m["cascade"]["members"][0] in ("small", "medium")
    with ec.load(tmp_path / "bundle", threads=1) as model:
        assert model.predict(np.load(tmp_path / "test.npz")["x"]).labels.shape == (12, 16, 32)
