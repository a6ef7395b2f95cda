"""Every subcommand on a segmentation bundle: select, bench and predict run it (run, export-triton and
export-onnx: tests/stream, tests/serve, tests/export); profile, compile and adapt refuse it in one line
saying why."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import edge_committee as ec  # noqa: E402
from edge_committee.cascade.tiles import confusion_matrix, miou_from_confusion  # noqa: E402
from edge_committee.cli.main import main  # noqa: E402
from tests.dense_helpers import build_tiny_segmentation  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return build_tiny_segmentation(tmp_path_factory.mktemp("segcli"), frames=16)


@pytest.fixture
def bundle(built, tmp_path) -> Path:
    """A copy of the built bundle per test (select rewrites it)."""
    return Path(shutil.copytree(built, tmp_path / "bundle"))


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_select_chooses_again_from_the_cached_tile_statistics(bundle, capsys):
    sel = json.loads((bundle / "selection.json").read_text())
    before = _manifest(bundle)["cascade"]
    small, large = (m["macs"] for m in _manifest(bundle)["members"])
    budget = small + 0.25 * (large - small)
    assert main(["select", str(bundle), "--budget-macs", str(budget), "--budget-kind", "mean"]) == 0
    after = _manifest(bundle)["cascade"]
    assert after["members"] == ["small", "large"] and after["mean_macs"] <= budget
    assert after["thresholds"] != before["thresholds"] and after["budget"] == budget
    assert "mIoU" in capsys.readouterr().out
    assert json.loads((bundle / "selection.json").read_text()) != sel  # the report is rewritten too
    # a target mIoU: the cheapest committee reaching the large member's tiled mIoU
    assert main(["select", str(bundle), "--target-accuracy", "largest_tiled"]) == 0
    tiled = next(m for m in _manifest(bundle)["members"] if m["name"] == "large")["tiled_accuracy"]["validation"]
    assert _manifest(bundle)["cascade"]["val_accuracy"] >= tiled
    with ec.load(bundle, threads=1) as model:  # the rewritten bundle still loads (checksums)
        assert model.thresholds == [float(t) for t in _manifest(bundle)["cascade"]["thresholds"]]


def test_select_can_narrow_the_chains_to_single_members(bundle):
    assert main(["select", str(bundle), "--budget-macs", "largest", "--budget-kind", "mean", "--max-members", "1"]) == 0
    c = _manifest(bundle)["cascade"]
    assert c["members"] == ["large"] and c["thresholds"] == [] and _manifest(bundle)["selection"]["max_members"] == 1


@pytest.mark.parametrize("flags, match", [
    (["--budget-ms", "3"], "select --budget-ms: does not apply to a segmentation bundle"),
    (["--budget-macs", "largest", "--confidence", "margin"], "select --confidence: does not apply"),
    (["--budget-macs", "largest", "--order", "any"], "large > small is not among them"),
])
def test_select_refusals_are_one_line_and_leave_the_bundle(bundle, capsys, flags, match):
    before = (bundle / "manifest.json").read_bytes()
    assert main(["select", str(bundle), *flags]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err)
    assert (bundle / "manifest.json").read_bytes() == before


def test_select_refuses_a_bundle_without_cached_statistics(bundle, capsys):
    from edge_committee.bundle import edit_bundle

    with edit_bundle(bundle) as ed:
        ed.remove("tile_stats.npz")
    assert main(["select", str(bundle), "--budget-macs", "largest"]) == 1
    assert "has no cached tile statistics (tile_stats.npz" in capsys.readouterr().err


def test_bench_times_the_cascade_and_the_members(built, bundle, tmp_path, capsys):
    out, src = tmp_path / "bench", built.parent / "test.npz"
    assert main(["bench", "-q", str(bundle), "--source", str(src), "--batch", "1,4", "--warmup", "1",
                 "--threads", "1", "--out", str(out)]) == 0
    doc = json.loads((out / "bench.json").read_text())
    assert doc["task"] == "segmentation" and (out / "bench.md").is_file()
    rows = {(r["batch"], r["role"]): r for r in doc["results"]}
    assert set(rows) == {(b, role) for b in (1, 4) for role in ("cascade", "largest & most accurate")}
    z = np.load(src)
    with ec.load(bundle, threads=1) as model:
        pred = model.predict(z["x"])
    m = _manifest(bundle)
    cascade = rows[(1, "cascade")]
    assert cascade["accuracy"] == pytest.approx(miou_from_confusion(confusion_matrix(pred.labels, z["y"], 3)))
    by = {e["name"]: e for e in m["members"]}
    deferred = (pred.tile_exit_stage > 0).sum()
    assert cascade["macs_per_frame"] == pytest.approx(by["small"]["macs"] + deferred * by["large"]["window_macs"] / 16)
    assert cascade["tiles_deferred"] == pytest.approx(deferred / pred.tile_exit_stage.size)
    assert rows[(4, "largest & most accurate")]["macs_per_frame"] == by["large"]["macs"]
    assert "frames/s" in capsys.readouterr().out
    # frames without class maps (.npy): timed, no mIoU
    np.save(tmp_path / "frames.npy", z["x"][:4])
    assert main(["bench", "-q", str(bundle), "--source", str(tmp_path / "frames.npy"), "--batch", "2", "--warmup", "0",
                 "--threads", "1", "--out", str(tmp_path / "b1")]) == 0
    rows = json.loads((tmp_path / "b1" / "bench.json").read_text())["results"]
    assert len(rows) == 2 and all("accuracy" not in r and r["images"] == 4 for r in rows)
    # what bench cannot do for a tile cascade is one line
    assert main(["bench", str(bundle), "--out", str(tmp_path / "b2")]) == 1
    assert "does not record where its frames are; pass --source" in capsys.readouterr().err
    assert main(["bench", str(bundle), "--source", str(src), "--profile", "x", "--out", str(tmp_path / "b3")]) == 1
    assert "no cost-model predictions" in capsys.readouterr().err


def test_predict_prints_class_shares_and_deferred_tiles(built, bundle, tmp_path, capsys):
    z = np.load(built.parent / "test.npz")
    np.save(tmp_path / "f.npy", z["x"][:3])
    assert main(["predict", str(bundle), str(tmp_path / "f.npy"), "--json", "--threads", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    with ec.load(bundle, threads=1) as model:
        pred = model.predict(z["x"][:3])
    hist = pred.histogram()
    for j, row in enumerate(rows):
        assert row["histogram"] == {pred.label_names[c]: int(n) for c, n in enumerate(hist[j]) if n}
        assert row["tiles_deferred"] == int((pred.tile_exit_stage[j] > 0).sum())
    assert main(["predict", str(bundle), str(tmp_path / "f.npy"), "--threads", "1"]) == 0
    assert all("deferred" in line and "%" in line for line in capsys.readouterr().out.splitlines())


@pytest.mark.parametrize("argv, why", [
    (["profile"], "time it end to end with 'edge-committee bench"),
    (["compile"], "TensorRT engines are built for classification members so far"),
    (["adapt", "--unlabeled", "u", "--member", "small"], "self-training fine-tunes classifier members"),
])
def test_commands_that_do_not_run_it_say_why_in_one_line(built, capsys, argv, why):
    assert main([argv[0], str(built), *argv[1:]]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and why in err and "a segmentation bundle" in err
