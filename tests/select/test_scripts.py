"""Smoke tests of the benchmark scripts on tiny inputs (the lead runs them on the real bundle)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edge_committee.select.synthetic import synthetic_data

ROOT = Path(__file__).resolve().parents[2]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bundle(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = synthetic_data(num_members=4, num_val=600, num_test=500, seed=7)
    arrays = {f"{m}/validation": x for m, x in data.val_logits.items()}
    arrays.update({f"{m}/test": x for m, x in data.test_logits.items()})
    arrays.update({"labels/validation": data.val_labels, "labels/test": data.test_labels})
    np.savez(tmp_path / "outputs.npz", **arrays)
    members = [{"name": m, "macs": int(c), "precision": "fp16"} for m, c in data.costs.items()]
    (tmp_path / "manifest.json").write_text(json.dumps({"members": members}))
    return tmp_path


def test_paper_findings_on_a_bundle(tmp_path):
    pytest.importorskip("matplotlib")
    bundle = _bundle(tmp_path / "bundle")
    out = tmp_path / "docs"
    rc = _script("paper_findings").main([str(bundle), "--out", str(out), "--max-len", "3"])
    assert rc == 0
    md = (out / "results.md").read_text()
    assert "## 1. Cascades vs single models" in md and "## 3. Matching the largest member (m3)" in md
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_paper_findings_reports_a_bad_bundle(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text("{}")
    assert _script("paper_findings").main([str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "members" in capsys.readouterr().err


def test_bench_select_runs(tmp_path, capsys):
    md = tmp_path / "bench.md"
    args = ["--members", "3", "--val", "300", "--test", "50", "--repeats", "1", "--no-report", "--write", str(md)]
    assert _script("bench_select").main(args) == 0
    assert "| frontier |" in md.read_text()
    assert '"cascades": 4' in capsys.readouterr().out


def test_bench_select_compares_searches(tmp_path, capsys):
    md = tmp_path / "cmp.md"
    args = ["--compare", "--members", "5", "--val", "400", "--test", "20", "--max-len", "3", "--search", "guided",
            "--zoo", "families", "--write", str(md)]
    assert _script("bench_select").main(args) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["search"]["search"]["mode"] == "guided" and row["exhaustive"]["search"]["mode"] == "exhaustive"
    assert row["exhaustive"]["search"]["sequences_scored"] == 20 and row["search"]["peak_rss_mib"] > 0
    assert min(row["gap"].values()) >= 0.0
    assert "search `guided` vs exhaustive" in md.read_text()
