"""Plain ONNX members: input checked against the preprocessing, external data bundled, NaN members left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from edge_committee.errors import EdgeCommitteeError, SpecError
from edge_committee.export import check_member_input, copy_member, model_digest
from edge_committee.spec.preprocess import Preprocessing
from tests.conftest import linear_member


def _with_input_dims(src: Path, dst: Path, dims) -> Path:
    m = onnx.load(str(src))
    shape = m.graph.input[0].type.tensor_type.shape
    for d, v in zip(shape.dim, dims):
        if isinstance(v, int):
            d.dim_value = v
        else:
            d.dim_param = v
    onnx.save(m, str(dst))
    return dst


@pytest.fixture
def member(tmp_path):
    return linear_member(tmp_path / "m.onnx", {"size": [8, 8], "color": "rgb", "mean": [0.5], "std": [0.5]}, 0.1, 0)


def test_matching_input_and_fixed_batch_one_pass(member, tmp_path):
    pp = Preprocessing.from_dict({"size": [8, 8]})
    assert check_member_input(member, pp, "m").fixed_batch is None
    fixed = _with_input_dims(member, tmp_path / "b1.onnx", [1, 3, 8, 8])
    assert check_member_input(fixed, pp, "m").fixed_batch == 1


@pytest.mark.parametrize("dims,pp,match", [
    ([32, 3, 8, 8], {"size": [8, 8]}, r"fixed batch of 32; re-export it with a dynamic batch"),
    (["N", 3, 8, 8], {"size": [9, 9]}, r"takes input \(N, 3, 8, 8\) but its preprocessing makes \(batch, 3, 9, 9\); set preprocessing size: \[8, 8\]"),
    (["N", 3, 8, 8], {"size": [8, 8], "layout": "NHWC"}, r"set preprocessing layout: NCHW"),
    (["N", 3, 8, 8], {"size": [8, 8], "color": "gray"}, r"set preprocessing color: rgb"),
])
def test_input_mismatch_is_one_line_naming_member_shapes_and_fix(member, tmp_path, dims, pp, match):
    path = _with_input_dims(member, tmp_path / "x.onnx", dims)
    with pytest.raises(SpecError, match=r"member 'm': x.onnx .*" + match) as e:
        check_member_input(path, Preprocessing.from_dict(pp), "m")
    assert "\n" not in str(e.value)


def test_external_data_is_copied_and_digested(member, tmp_path):
    m = onnx.load(str(member))
    onnx.save_model(m, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.onnx.data",
                    size_threshold=0)
    files = copy_member(tmp_path / "ext.onnx", tmp_path / "out.onnx")
    assert [f.name for f in files] == ["out.onnx", "out.onnx.data"] and files[1].is_file()
    d1 = model_digest(tmp_path / "out.onnx")
    data = (tmp_path / "out.onnx.data").read_bytes()
    (tmp_path / "out.onnx.data").write_bytes(data[:-4] + b"\x00\x00\x80\x3f")  # change one weight
    assert model_digest(tmp_path / "out.onnx") != d1  # the cache key sees the weights


def _spec(tmp_path: Path, members: list[dict]) -> Path:
    from tests.conftest import LABELS, make_images

    x, y = make_images(60, 1)
    np.savez(tmp_path / "val.npz", x=x, y=y)
    spec = {"name": "t", "labels": LABELS, "members": members,
            "data": {"validation": {"format": "npz", "path": "val.npz"}},
            "budget": {"macs": "largest"}, "evaluation": {"batch_size": 16, "threads": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "c.yaml"


def test_build_bundles_external_data_and_runs_fixed_batch_one(tmp_path):
    from edge_committee.bundle import read_manifest
    from edge_committee.pipeline import build

    pp = {"size": [12, 12], "color": "rgb", "mean": [0.5], "std": [0.25]}
    src = linear_member(tmp_path / "a.onnx", pp, 0.05, 0)
    onnx.save_model(onnx.load(str(src)), str(tmp_path / "ext.onnx"), save_as_external_data=True,
                    location="ext.onnx.data", size_threshold=0)
    _with_input_dims(src, tmp_path / "b1.onnx", [1, 3, 12, 12])
    spec = _spec(tmp_path, [{"name": "ext", "onnx": "ext.onnx", "preprocessing": pp},
                            {"name": "b1", "onnx": "b1.onnx", "preprocessing": pp}])
    manifest = build(spec, tmp_path / "out", cache_dir=tmp_path / "cache", log=lambda s: None)
    assert "members/ext.fp32.onnx.data" in manifest["files"]
    acc = {m["name"]: m["accuracy"]["validation"] for m in manifest["members"]}
    assert acc["ext"] == acc["b1"] > 0.8  # the same weights: batch-1 run one by one gives the same
    read_manifest(tmp_path / "out")  # every listed checksum matches


def test_nan_member_is_left_out_with_its_counts(tmp_path):
    from edge_committee.pipeline import build

    pp = {"size": [12, 12], "color": "rgb", "mean": [0.5], "std": [0.25]}
    good = linear_member(tmp_path / "good.onnx", pp, 0.05, 0)
    m = onnx.load(str(good))
    b = next(t for t in m.graph.initializer if t.name == "b")
    b.CopyFrom(onnx.numpy_helper.from_array(np.array([np.nan, 0, 0, 0], np.float32), "b"))
    onnx.save(m, str(tmp_path / "nan.onnx"))
    spec = _spec(tmp_path, [{"name": "good", "onnx": "good.onnx", "preprocessing": pp},
                            {"name": "nanm", "onnx": "nan.onnx", "preprocessing": pp}])
    manifest = build(spec, tmp_path / "out", cache_dir=tmp_path / "cache", log=lambda s: None)
    assert [m["name"] for m in manifest["members"]] == ["good"]
    (r,) = manifest["rejected_variants"]
    assert r["member"] == "nanm" and r["nonfinite_rows"] == {"validation": 60} and "60 of 60" in r["reason"]
    spec2 = _spec(tmp_path, [{"name": "nanm", "onnx": "nan.onnx", "preprocessing": pp}])
    with pytest.raises(EdgeCommitteeError, match="every member was excluded"):
        build(spec2, tmp_path / "out2", cache_dir=tmp_path / "cache", log=lambda s: None)
