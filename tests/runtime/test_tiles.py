"""A segmentation bundle end to end: build, load, the ORT tile loop equals the NumPy reference,
the bundle's figures equal what the runtime does, selection picks what the budget asks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import edge_committee as ec  # noqa: E402
from edge_committee.cascade import tiles as T  # noqa: E402
from edge_committee.errors import BundleError  # noqa: E402
from edge_committee.runtime import CascadeModel  # noqa: E402
from edge_committee.spec import load_spec  # noqa: E402
from tests.dense_helpers import write_tiny_segmentation  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("seg")
    spec = write_tiny_segmentation(d, tile=(8, 8), margin=2)
    ec.build(spec, d / "bundle", log=lambda s: None, threads=1)
    return d / "bundle"


def _session(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]


def _reference(bundle: Path, frames: np.ndarray, thresholds=None):
    m = json.loads((bundle / "manifest.json").read_text())
    by = {e["name"]: e for e in m["members"]}
    names, seg = m["cascade"]["members"], m["segmentation"]
    grid = T.TileGrid(tuple(seg["tile"]), seg["margin"])
    from edge_committee.spec.preprocess import Preprocessing

    xs = [Preprocessing.from_dict(by[n]["preprocessing"])(frames[..., None]) for n in names]
    runs = [_session(bundle / by[n]["file"]) for n in names]
    later = [lambda idx, k=k: runs[k](grid.windows(xs[k], idx)) for k in range(1, len(names))]
    t = m["cascade"]["thresholds"] if thresholds is None else thresholds
    return T.run_tile_cascade(runs[0](xs[0]), later, grid, t, seg["confidence"], frame=tuple(seg["frame"])), m


def test_runtime_equals_the_reference_and_the_bundle_figures(bundle: Path):
    z = np.load(bundle.parent / "test.npz")
    ref, manifest = _reference(bundle, z["x"])
    assert manifest["task"] == "segmentation" and manifest["cascade"]["members"] == ["small", "large"]
    with ec.load(bundle, threads=1) as model:
        pred = model.predict(z["x"])
    np.testing.assert_array_equal(pred.labels, ref.labels)
    np.testing.assert_array_equal(pred.tile_exit_stage, ref.tile_exit_stage)
    np.testing.assert_allclose(pred.probs, ref.probs, atol=1e-6)
    deferred = int((ref.tile_exit_stage == 1).sum())
    assert 0 < deferred < ref.tile_exit_stage.size and pred.tiles_run == [deferred]
    c = manifest["cascade"]
    # the bundle's test figures are what the runtime does on the test split
    miou = T.miou_from_confusion(T.confusion_matrix(pred.labels, z["y"], 3))
    assert c["test_accuracy"] == pytest.approx(miou, abs=1e-12)
    assert c["test_exit_histogram"] == [ref.tile_exit_stage.size - deferred, deferred]
    small, large = manifest["members"]
    assert c["test_mean_cost"] == pytest.approx(small["macs"] + large["window_macs"] * deferred / len(z["x"]))
    assert pred.histogram().sum() == z["y"].size


def test_threshold_exactly_at_a_tile_confidence_exits(bundle: Path):
    z = np.load(bundle.parent / "test.npz")
    none_deferred, _ = _reference(bundle, z["x"], thresholds=[-np.inf])
    conf0 = none_deferred.tile_confidence.ravel()
    t = float(np.sort(conf0)[len(conf0) // 2])
    at, _ = _reference(bundle, z["x"], thresholds=[t])
    stage = at.tile_exit_stage.ravel()
    assert (stage[conf0 == np.float32(t)] == 0).all() and (stage[conf0 < np.float32(t)] == 1).all()


def test_selection_front_is_exact_and_the_choice_meets_the_budget(bundle: Path):
    from edge_committee.select import dense as D

    spec = load_spec(bundle.parent / "committee.yaml")
    manifest = json.loads((bundle / "manifest.json").read_text())
    c = manifest["cascade"]
    small, large = manifest["members"]
    assert c["mean_cost"] <= large["macs"] and c["objective"] == "mean_cost"
    # brute force over every threshold on the validation split: the chosen point is on the front
    from edge_committee.evaluate.dense import split_stats

    z = np.load(bundle.parent / "val.npz")
    grid = spec.segmentation.grid
    runs = {e["name"]: _session(bundle / e["file"]) for e in manifest["members"]}
    members = {m.name: (runs[m.name], m.preprocessing) for m in spec.members}
    stats = split_stats(members, z["x"], z["y"], grid, 3, [("small", "large")])
    costs = D.DenseCosts({e["name"]: e["macs"] for e in manifest["members"]},
                         {e["name"]: e["window_macs"] for e in manifest["members"]})
    conf = stats.prefixes[("small",)].conf
    thr = np.concatenate([[np.inf], np.unique(conf)])[:, None]
    acc, macs = D.score(stats, ("small", "large"), D.exit_stages(stats, ("small", "large"), thr), costs)
    front = D.sequence_front(stats, ("small", "large"), costs)
    for a, m in zip(front.accuracy, front.mean_cost):  # every front point is a brute-force point ...
        assert np.isclose(acc, a, atol=1e-12).any() and np.isclose(macs, m).any()
    for a, m in zip(acc, macs):  # ... and each brute-force point is matched by a front point
        assert ((front.mean_cost <= m + 1e-9) & (front.accuracy >= a - 1e-12)).any()
    ok = macs <= large["macs"]
    assert c["val_accuracy"] == pytest.approx(acc[ok].max(), abs=1e-12)
    # a target mIoU: the cheapest candidate that reaches it
    target = float(np.sort(acc)[len(acc) // 2])
    res = D.select_dense(stats, None, costs, [("small", "large")], "accuracy", target)
    assert res.chosen.val_accuracy >= target
    cheapest = min(np.concatenate([macs[acc >= target], [s.cost for s in front_singles(stats, costs)
                                                          if s.accuracy >= target]]))
    assert res.chosen.mean_cost == pytest.approx(cheapest)


def front_singles(stats, costs):
    from edge_committee.select import dense as D

    return D.dense_frontier(stats, None, costs, [], "mean_max_prob").singles


def test_report_loaders_and_commands(bundle: Path, capsys):
    from edge_committee.cli.main import main
    from edge_committee.pipeline import reselect
    from edge_committee.errors import EdgeCommitteeError

    assert "mIoU" in (bundle / "selection.md").read_text() and "mIoU" in (bundle / "report.md").read_text()
    with pytest.raises(BundleError, match="load it with edge_committee.load"):
        CascadeModel(bundle)
    with pytest.raises(EdgeCommitteeError, match="select --confidence: does not apply to a segmentation bundle"):
        reselect(bundle, "mean_cost", 1.0, confidence="margin")
    assert main(["inspect", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["profile", str(bundle)]) == 1
    err = capsys.readouterr().err
    assert "a segmentation bundle; 'edge-committee profile' does not run it: a device profile times members" in err
    assert err.count("\n") == 1


def test_a_later_member_with_its_own_preprocessing_sees_only_frames_with_active_tiles(bundle: Path):
    """Member 1 normalizes differently: the loop preprocesses only the frames that still have active
    tiles and maps their windows back (the reference preprocesses every frame)."""
    from edge_committee.backend.onnxrt import OnnxrtRunner
    from edge_committee.runtime.tiles import TileHostLoop
    from edge_committee.spec.preprocess import Preprocessing

    z = np.load(bundle.parent / "test.npz")
    frames = z["x"].copy()
    frames[::2] = 40  # flat background frames: confident everywhere, no tile deferred there
    pp0 = Preprocessing.from_dict({"size": [16, 32], "color": "gray", "scale": 1 / 255, "offset": 0.0})
    pp1 = Preprocessing.from_dict({"size": [16, 32], "color": "gray", "scale": 1 / 255, "offset": 0.05})
    grid = T.TileGrid((8, 8), 2)
    runners = [OnnxrtRunner(bundle / f"members/{n}.fp32.onnx", threads=1, name=n) for n in ("small", "large")]
    loop = TileHostLoop(runners, [pp0, pp1], grid, [0.95], "mean_max_prob", ["a", "b", "c"])
    loop.activate()
    try:
        got = loop.run(frames)
    finally:
        loop.deactivate()
    x0, x1 = pp0(frames[..., None]), pp1(frames[..., None])
    s, l_ = _session(bundle / "members/small.fp32.onnx"), _session(bundle / "members/large.fp32.onnx")
    ref = T.run_tile_cascade(s(x0), [lambda idx: l_(grid.windows(x1, idx))], grid, [0.95], frame=(16, 32))
    assert (ref.tile_exit_stage[::2] == 0).all() and (ref.tile_exit_stage[1::2] == 1).any()
    np.testing.assert_array_equal(got.tile_exit_stage, ref.tile_exit_stage)
    np.testing.assert_array_equal(got.labels, ref.labels)


def test_torch_path_on_the_cpu_equals_the_host_loop(bundle: Path):
    pytest.importorskip("torch")
    from edge_committee.errors import EdgeCommitteeError

    z = np.load(bundle.parent / "test.npz")
    with ec.load(bundle, threads=1) as model:
        want = model.predict(z["x"])
    try:
        torch_model = ec.load(bundle, backend="torch-cuda", device="cpu")
        with torch_model:
            got = torch_model.predict(z["x"])
    except EdgeCommitteeError as exc:  # onnx2torch not installed
        pytest.skip(str(exc))
    t = model.thresholds[0]
    near = np.abs(want.tile_confidence - t) < 1e-5
    assert (got.tile_exit_stage == want.tile_exit_stage)[~near].all()
    same = (got.tile_exit_stage == want.tile_exit_stage)
    tiles_equal = (T.TileGrid((8, 8)).split(got.labels[:, None]) == T.TileGrid((8, 8)).split(want.labels[:, None]))
    assert tiles_equal.reshape(*same.shape, -1).all(axis=2)[same].all()
    np.testing.assert_allclose(got.probs, want.probs, atol=1e-4)
    assert got.tiles_run == want.tiles_run or near.any()


def test_long_batches_run_in_chunks_with_the_same_result(bundle: Path, monkeypatch):
    from edge_committee.runtime import tiles as RT

    z = np.load(bundle.parent / "test.npz")
    with ec.load(bundle, threads=1) as model:
        whole = model.predict(z["x"])
        monkeypatch.setattr(RT, "CHUNK_VALUES", 3 * 16 * 32 * 5)  # 5 frames per chunk
        parts = model.predict(z["x"])
    np.testing.assert_array_equal(parts.labels, whole.labels)
    np.testing.assert_array_equal(parts.tile_exit_stage, whole.tile_exit_stage)
    assert parts.tiles_run == whole.tiles_run and parts.probs.shape == whole.probs.shape


def test_empty_and_single_frame_inputs(bundle: Path):
    with ec.load(bundle, threads=1) as model:
        empty = model.predict(np.zeros((0, 16, 32), np.uint8))
        one = model.predict(np.load(bundle.parent / "test.npz")["x"][0])
        with pytest.raises(Exception, match="raw uint8 frames"):
            model.predict(np.zeros((1, 16, 32), np.float32))
    assert empty.labels.shape == (0, 16, 32) and empty.tile_exit_stage.shape == (0, 8)
    assert one.labels.shape == (1, 16, 32)
