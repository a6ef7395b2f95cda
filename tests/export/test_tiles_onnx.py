"""export-onnx on a segmentation bundle: the tile cascade as one ONNX graph equals the NumPy reference
(tile decisions, class maps, probabilities) for the chosen cascade and for committees given on the
command line (every tile deferred, none deferred, one member), from frames of another size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

import edge_committee as ec  # noqa: E402
from edge_committee.cascade import tiles as T  # noqa: E402
from edge_committee.cli.main import main  # noqa: E402
from edge_committee.spec.preprocess import Preprocessing  # noqa: E402
from tests.dense_helpers import build_tiny_segmentation  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_tiny_segmentation(tmp_path_factory.mktemp("fusedseg"))


def _run(path: Path, images: np.ndarray) -> dict:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {"images": images})))


def _reference(bundle: Path, frames: np.ndarray, members: list[str], thresholds: list[float]):
    """The NumPy reference over ONNX Runtime sessions of the members (as tests/runtime/test_tiles.py)."""
    m = json.loads((bundle / "manifest.json").read_text())
    by, seg = {e["name"]: e for e in m["members"]}, m["segmentation"]
    grid = T.TileGrid(tuple(seg["tile"]), seg["margin"])
    xs = [Preprocessing.from_dict(by[n]["preprocessing"])(frames) for n in members]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = [ort.InferenceSession(str(bundle / by[n]["file"]), opts, providers=["CPUExecutionProvider"])
            for n in members]
    runs = [lambda x, s=s: s.run(None, {s.get_inputs()[0].name: x})[0] for s in sess]
    later = [lambda idx, k=k: runs[k](grid.windows(xs[k], idx)) for k in range(1, len(members))]
    return T.run_tile_cascade(runs[0](xs[0]), later, grid, thresholds, seg["confidence"], frame=tuple(seg["frame"]))


def _assert_equal(out: dict, ref) -> None:
    np.testing.assert_array_equal(out["tile_exit_stage"], ref.tile_exit_stage)
    np.testing.assert_array_equal(out["class_map"], ref.labels)
    np.testing.assert_array_equal(out["tile_flags"], ref.tile_flags)
    np.testing.assert_allclose(out["tile_confidence"], ref.tile_confidence, atol=1e-6)
    np.testing.assert_allclose(out["probs"], ref.probs, atol=1e-5)
    hist = np.stack([np.bincount(x[x >= 0].ravel(), minlength=out["probs"].shape[1]) for x in ref.labels])
    np.testing.assert_array_equal(out["histogram"], hist)
    np.testing.assert_array_equal(out["tiles_deferred"][:, 0], (ref.tile_exit_stage > 0).sum(axis=1))


def test_the_chosen_cascade_equals_the_reference(bundle, tmp_path, capsys):
    out = tmp_path / "fused.onnx"
    assert main(["export-onnx", str(bundle), "--out", str(out)]) == 0
    z = np.load(bundle.parent / "test.npz")
    m = json.loads((bundle / "manifest.json").read_text())
    ref = _reference(bundle, z["x"][..., None], m["cascade"]["members"], m["cascade"]["thresholds"])
    assert 0 < (ref.tile_exit_stage > 0).sum() < ref.tile_exit_stage.size  # both stages decide some tiles
    got = _run(out, z["x"][..., None])
    _assert_equal(got, ref)
    assert got["class_map"].dtype == np.int32 and got["probs"].shape == (12, 3, 16, 32)
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["edge_committee.segmentation"])["tile"] == [8, 8]
    assert props["edge_committee.manifest_sha256"] == m["manifest_sha256"]
    assert _run(out, z["x"][:0, ..., None])["class_map"].shape == (0, 16, 32)  # an empty batch


@pytest.mark.parametrize("members, thresholds", [
    ("small,large", "1.01"),  # every tile goes to the large member
    ("small,large", "0.0"),  # no tile does: the large member's branch never runs
    ("large", None),  # one member on whole frames
])
def test_committees_from_the_command_line_and_another_source_size(bundle, tmp_path, members, thresholds):
    out = tmp_path / "fused.onnx"
    argv = ["export-onnx", str(bundle), "--out", str(out), "--members", members, "--source-size", "96x48x3"]
    assert main(argv + (["--thresholds", thresholds] if thresholds else [])) == 0
    z = np.load(bundle.parent / "test.npz")
    frames = np.repeat(z["x"].repeat(3, axis=1).repeat(3, axis=2)[..., None], 3, axis=-1)  # 48x96 RGB
    names = members.split(",")
    ref = _reference(bundle, frames, names, [float(thresholds)] if thresholds else [])
    _assert_equal(_run(out, frames), ref)


def test_what_the_fused_tile_file_cannot_do_is_one_line(bundle, tmp_path, capsys):
    for flags in (["--form", "mask"], ["--gate", "plugin"]):
        assert main(["export-onnx", str(bundle), "--out", str(tmp_path / "x.onnx"), *flags]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "compact form with standard ONNX ops only" in err
    assert not (tmp_path / "x.onnx").exists()


def test_into_the_bundle_it_is_listed_and_the_bundle_still_loads(bundle, tmp_path):
    import shutil

    copy = Path(shutil.copytree(bundle, tmp_path / "b"))
    assert main(["export-onnx", str(copy), "--into-bundle"]) == 0
    m = json.loads((copy / "manifest.json").read_text())
    (entry,) = m["fused_onnx"]
    assert entry["file"] in m["files"] and (copy / entry["file"]).is_file()
    frames = np.load(bundle.parent / "test.npz")["x"]
    with ec.load(copy, threads=1) as host, ec.load(copy, backend="onnxrt-fused", threads=1) as fused:
        a, b = host.predict(frames), fused.predict(frames)
        assert fused.executor.origins == {(16, 32, 1): str(copy / entry["file"])}  # the listed file, not a build
        rgb = fused.predict(list(np.repeat(frames[:3, ..., None], 3, axis=-1)))  # another size: built in memory
        assert fused.executor.origins[(16, 32, 3)] == "built in memory" and rgb.labels.shape == (3, 16, 32)
        assert fused.predict([]).labels.shape == (0, 16, 32)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.tile_exit_stage, b.tile_exit_stage)
    assert a.tiles_run == b.tiles_run
    # choosing again drops the file of the old thresholds (it no longer encodes the bundle's committee)
    small, large = (e["macs"] for e in m["members"])
    assert main(["select", str(copy), "--budget-macs", str(small + 0.1 * (large - small)), "--budget-kind",
                 "mean"]) == 0
    m2 = json.loads((copy / "manifest.json").read_text())
    assert m2["cascade"]["thresholds"] != m["cascade"]["thresholds"]
    assert not m2.get("fused_onnx") and not (copy / entry["file"]).exists()


def _nan_where_bright(src: Path, dst: Path, tensor: str) -> Path:
    """``src`` with its logits made NaN wherever ``tensor`` (its input or pooled input) is above 0.9."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(src))
    out = m.graph.output[0].name
    for node in m.graph.node:  # the logits node now writes "raw"
        node.output[:] = ["raw" if o == out else o for o in node.output]
    m.graph.initializer.extend([numpy_helper.from_array(np.float32(0.9), "thr"),
                                numpy_helper.from_array(np.float32(0.0), "zero")])
    m.graph.node.extend([helper.make_node("Sub", ["thr", tensor], ["d"]), helper.make_node("Log", ["d"], ["l"]),
                         helper.make_node("Mul", ["l", "zero"], ["z"]), helper.make_node("Add", ["raw", "z"], [out])])
    onnx.save(m, str(dst))
    return dst


def test_non_finite_logits_are_flagged_as_the_reference_flags_them(bundle, tmp_path):
    from edge_committee.cascade.tiles import TileGrid
    from edge_committee.export.cascade_onnx.build import Source
    from edge_committee.export.cascade_onnx.export import write_model
    from edge_committee.export.cascade_onnx.inline import MemberSource
    from edge_committee.export.cascade_onnx.tiles import build_tile_cascade_model

    m = json.loads((bundle / "manifest.json").read_text())
    by = {e["name"]: e for e in m["members"]}
    files = {"small": _nan_where_bright(bundle / by["small"]["file"], tmp_path / "small.onnx", "pooled"),
             "large": _nan_where_bright(bundle / by["large"]["file"], tmp_path / "large.onnx", "image")}
    pp = Preprocessing.from_dict(by["small"]["preprocessing"])
    members = [MemberSource(n, files[n], pp) for n in ("small", "large")]
    threshold = m["cascade"]["thresholds"][0]
    model = build_tile_cascade_model(members, [threshold], TileGrid((8, 8), 2), "mean_max_prob", Source(16, 32, 1), 3)
    path = write_model(model, tmp_path / "fused.onnx")
    frames = np.load(bundle.parent / "test.npz")["x"][..., None]
    x = pp(frames)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = {n: ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"]) for n, f in files.items()}
    run = {n: (lambda v, s=s: s.run(None, {"image": v})[0]) for n, s in sess.items()}
    grid = TileGrid((8, 8), 2)
    ref = T.run_tile_cascade(run["small"](x), [lambda idx: run["large"](grid.windows(x, idx))], grid, [threshold],
                             "mean_max_prob", frame=(16, 32))
    assert 0 < ref.tile_flags.sum() < ref.tile_flags.size and (ref.labels == -1).any()  # the case is exercised
    got = _run(path, frames)
    np.testing.assert_array_equal(got["tile_flags"], ref.tile_flags)
    np.testing.assert_array_equal(got["tile_exit_stage"], ref.tile_exit_stage)
    np.testing.assert_array_equal(got["class_map"], ref.labels)
    np.testing.assert_array_equal(np.isnan(got["tile_confidence"]), np.isnan(ref.tile_confidence))
    np.testing.assert_allclose(got["tile_confidence"], ref.tile_confidence, atol=1e-6)  # NaN == NaN here
    np.testing.assert_allclose(got["probs"], ref.probs, atol=1e-5)
