"""End to end on plain ONNX members: build, inspect, predict, select, load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_committee.bundle import read_manifest
from edge_committee.cascade.reference import evaluate_cascade, run_cascade
from edge_committee.cli.main import main
from edge_committee.errors import BundleError


def test_build_writes_a_checked_bundle(built_bundle: Path):
    m = read_manifest(built_bundle)
    assert [x["name"] for x in m["members"]] == ["small", "medium", "large"]
    sizes = {x["name"]: x["preprocessing"]["size"] for x in m["members"]}
    assert sizes == {"small": [6, 6], "medium": [8, 8], "large": [12, 12]}
    for x in m["members"]:
        onnx.checker.check_model(str(built_bundle / x["file"]))
        assert x["macs"] == int(np.prod(x["input_shape"][1:])) * 4  # one Gemm: inputs x 4 classes
        assert x["labels"] == m["labels"]
    acc = {x["name"]: x["accuracy"]["test"] for x in m["members"]}
    assert acc["large"] > acc["small"]  # the fixture makes the small member weaker
    c = m["cascade"]
    assert c["worst_macs"] <= max(x["macs"] for x in m["members"])  # budget: largest, worst case
    for name in ("report.md", "report.json", "selection.png", "selection.md", "outputs.npz"):
        assert name in m["files"]


def test_manifest_figures_match_the_reference(built_bundle: Path):
    """Recompute the chosen cascade from the cached outputs with the NumPy reference."""
    m = read_manifest(built_bundle)
    c = m["cascade"]
    macs = {x["name"]: x["macs"] for x in m["members"]}
    with np.load(built_bundle / "outputs.npz") as z:
        for split, key in (("validation", "val_accuracy"), ("test", "test_accuracy")):
            logits = [z[f"{n}/{split}"] for n in c["members"]]
            ev = evaluate_cascade(logits, z[f"labels/{split}"], c["thresholds"], [macs[n] for n in c["members"]],
                                  c["confidence"])
            assert ev.accuracy == pytest.approx(c[key], abs=1e-9)
            if split == "validation":
                assert ev.mean_cost == pytest.approx(c["mean_cost"], rel=1e-9)
                assert ev.worst_cost == pytest.approx(c["worst_macs"])


def test_second_build_reads_the_cache(tiny_committee: Path, cache_dir: Path, monkeypatch):
    from edge_committee import pipeline
    from edge_committee.evaluate import evaluate

    pipeline.build(tiny_committee, tiny_committee.parent / "b1", cache_dir=cache_dir, log=lambda s: None)
    calls = []
    real = evaluate.run_member
    monkeypatch.setattr(evaluate, "run_member", lambda *a, **k: calls.append(a) or real(*a, **k))
    pipeline.build(tiny_committee, tiny_committee.parent / "b2", cache_dir=cache_dir, log=lambda s: None)
    assert calls == []
    pipeline.build(tiny_committee, tiny_committee.parent / "b3", cache_dir=cache_dir, use_cache=False,
                   log=lambda s: None)
    assert len(calls) == 6  # 3 members x 2 splits


@pytest.mark.parametrize("gate", ["auto", "numpy"])
def test_load_predict_matches_the_reference(built_bundle: Path, gate: str):
    """The runtime (ONNX Runtime members + the C++ gate if built, else NumPy) vs the reference."""
    import edge_committee as ec

    m = read_manifest(built_bundle)
    c = m["cascade"]
    with np.load(built_bundle.parent / "test.npz") as z:
        x = z["x"][:100]
    with np.load(built_bundle / "outputs.npz") as z:
        ref = run_cascade([z[f"{n}/test"][:100] for n in c["members"]], c["thresholds"], c["confidence"])
    with ec.load(built_bundle, gate=gate) as model:
        pred = model.predict(x)
    np.testing.assert_array_equal(pred.labels, ref.label)
    np.testing.assert_array_equal(pred.exit_stage, ref.exit_stage)
    np.testing.assert_allclose(pred.probs, ref.probs, atol=1e-6)


def test_inspect_detects_one_changed_byte(built_bundle: Path, capsys):
    assert main(["inspect", str(built_bundle)]) == 0
    target = built_bundle / "members" / "medium.fp32.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["inspect", str(built_bundle)]) == 1
    err = capsys.readouterr().err
    assert "medium.fp32.onnx" in err and "checksum mismatch" in err
    with pytest.raises(BundleError, match="medium.fp32.onnx"):
        read_manifest(built_bundle)


def test_load_rejects_unknown_schema(built_bundle: Path):
    path = built_bundle / "manifest.json"
    m = json.loads(path.read_text())
    m["schema_version"] = 99
    path.write_text(json.dumps(m))
    with pytest.raises(BundleError, match="schema_version 99"):
        read_manifest(built_bundle)


def test_predict_cli_on_npy_and_images(built_bundle: Path, capsys):
    from PIL import Image

    with np.load(built_bundle.parent / "test.npz") as z:
        x = z["x"][:5]
    np.save(built_bundle.parent / "batch.npy", x)
    Image.fromarray(x[0]).save(built_bundle.parent / "one.png")
    capsys.readouterr()
    assert main(["predict", str(built_bundle), str(built_bundle.parent / "batch.npy"),
                 str(built_bundle.parent / "one.png"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6
    assert rows[0]["class"] == rows[5]["class"]  # same image, as .npy row and as PNG
    assert {"label", "confidence", "exit_stage", "exit_member"} <= set(rows[0])


def test_select_reselects_in_place(built_bundle: Path, capsys):
    before = read_manifest(built_bundle)
    macs = {x["name"]: x["macs"] for x in before["members"]}
    budget = macs["small"] + macs["medium"]
    assert main(["select", str(built_bundle), "--budget-macs", str(budget), "--budget-kind", "worst"]) == 0
    after = read_manifest(built_bundle)  # checksums rewritten consistently
    assert after["cascade"]["worst_macs"] <= budget
    assert after["cascade"]["budget"] == budget
    for x, y in zip(before["members"], after["members"]):
        assert x["sha256"] == y["sha256"]  # members untouched
    manifest_bytes = (built_bundle / "manifest.json").read_bytes()
    assert main(["select", str(built_bundle), "--budget-macs", "1"]) == 1
    assert "cheapest" in capsys.readouterr().err
    assert (built_bundle / "manifest.json").read_bytes() == manifest_bytes  # failed: nothing changed
    assert [p.name for p in built_bundle.parent.iterdir() if p.name.startswith(".bundle")] == []


def test_label_free_validation(tiny_committee: Path, cache_dir: Path):
    """Unlabelled validation data (camera footage): candidates are scored by agreement."""
    from edge_committee.pipeline import build

    with np.load(tiny_committee.parent / "val.npz") as z:
        np.savez(tiny_committee.parent / "val_nolabels.npz", x=z["x"])
    text = tiny_committee.read_text().replace("path: val.npz", "path: val_nolabels.npz")
    tiny_committee.write_text(text)
    m = build(tiny_committee, tiny_committee.parent / "lf", cache_dir=cache_dir, log=lambda s: None)
    c = m["cascade"]
    assert c["label_free"] is True and c["reference"] == "ensemble"
    assert c["test_accuracy"] is not None  # test labels still report real accuracy
    assert "Label-free selection" in (tiny_committee.parent / "lf" / "report.md").read_text()


def test_select_latency_profile(built_bundle: Path, tmp_path: Path):
    prof = tmp_path / "latency.json"
    prof.write_text(json.dumps({"unit": "ms", "members": {"small": 1.0, "medium": 2.0, "large": 8.0}}))
    assert main(["select", str(built_bundle), "--budget-ms", "3", "--profile", str(prof)]) == 0
    c = read_manifest(built_bundle)["cascade"]
    assert c["cost_unit"] == "ms" and c["worst_cost"] <= 3.0


def test_build_failure_leaves_nothing_half_written(tiny_committee: Path, cache_dir: Path):
    from edge_committee.errors import EdgeCommitteeError
    from edge_committee.pipeline import build

    # the last member is corrupt: the build fails after the first members were written
    (tiny_committee.parent / "large.onnx").write_bytes(b"not an onnx file")
    out = tiny_committee.parent / "never"
    with pytest.raises(EdgeCommitteeError, match="large.onnx"):
        build(tiny_committee, out, cache_dir=cache_dir, log=lambda s: None)
    assert not out.exists()
    assert not [p for p in tiny_committee.parent.iterdir() if p.name.startswith(".never")]


def test_python_dash_m_runs(built_bundle: Path):
    r = subprocess.run([sys.executable, "-m", "edge_committee", "inspect", str(built_bundle)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "checksums match" in r.stdout


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_out_that_is_not_a_bundle_fails_before_building(tiny_committee: Path, cache_dir: Path, kind, capsys):
    out = tiny_committee.parent / "taken"
    if kind == "file":
        out.write_text("precious")
    else:
        out.mkdir()
        (out / "precious.txt").write_text("precious")
    assert main(["build", str(tiny_committee), "--out", str(out), "-q", "--cache-dir", str(cache_dir)]) == 1
    assert "choose another --out" in capsys.readouterr().err
    assert not cache_dir.exists()  # failed before any member ran
    assert (out.read_text() if kind == "file" else (out / "precious.txt").read_text()) == "precious"
    assert not [p for p in tiny_committee.parent.iterdir() if p.name.startswith(".taken")]


def test_build_shows_progress_for_its_long_steps(tiny_committee: Path, cache_dir: Path, monkeypatch):
    """A bar over the members, and one per member and split for its evaluation (batches)."""
    from edge_committee import pipeline
    from edge_committee.evaluate import evaluate

    bars = []

    def recording(iterable, total=None, desc="", unit="it"):
        bars.append((desc, unit, total))
        return iterable

    monkeypatch.setattr(pipeline, "progress", recording)
    monkeypatch.setattr(evaluate, "progress", recording)
    pipeline.build(tiny_committee, tiny_committee.parent / "b", cache_dir=cache_dir, use_cache=False,
                   log=lambda s: None)
    assert bars[0] == ("members", "member", 3)
    assert {(d, u) for d, u, _ in bars[1:]} >= {("small validation", "batch"), ("large test", "batch")}
