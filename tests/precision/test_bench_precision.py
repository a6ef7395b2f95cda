"""benchmarks/bench_precision.py end to end on a tiny bundle (manifest + spec made here)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np

from .conftest import PREPROCESSING, make_images

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_precision.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_precision", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_precision_on_a_tiny_bundle(tiny_onnx, tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "members").mkdir(parents=True)
    shutil.copy(tiny_onnx, bundle / "members" / "tiny.onnx")
    manifest = {"members": [{"name": "tiny", "file": "members/tiny.onnx", "precision": "fp32",
                             "preprocessing": PREPROCESSING.to_dict(), "macs": 12345}]}  # fmt: skip
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    for split, seed, n in (("train", 1, 96), ("val", 2, 120), ("test", 3, 80)):
        x, y = make_images(n, seed)
        np.save(tmp_path / f"{split}_x.npy", x)
        np.save(tmp_path / f"{split}_y.npy", y)
    data = "\n".join(
        f"  {name}: {{format: npy, images: {s}_x.npy, labels: {s}_y.npy}}"
        for name, s in (("train", "train"), ("validation", "val"), ("test", "test"))
    )
    (tmp_path / "spec.yaml").write_text(
        "labels: [h, v, f, o]\nmembers:\n  - name: tiny\n    onnx: bundle/members/tiny.onnx\n"
        f"    preprocessing: {json.dumps(PREPROCESSING.to_dict())}\ndata:\n{data}\n"
    )
    out = tmp_path / "report" / "bench"
    mod = _load_script()
    rc = mod.main([str(bundle), "--spec", str(tmp_path / "spec.yaml"), "--out", str(out),
                   "--iters-b1", "3", "--iters-b64", "2", "--warmup", "1", "--calib-count", "64"])  # fmt: skip
    assert rc == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert [r["precision"] for r in result["rows"]] == ["fp32", "fp16", "int8"]
    assert result["settings"]["calib_samples"] == 64 and result["settings"]["test_samples"] == 80
    assert result["machine"]["cores"] and "bench_precision.py" in result["command"]
    for r in result["rows"]:
        assert r["macs"] == 12345 and r["batch1_ms"]["median"] > 0 and r["batch64_ms"]["iters"] == 2
    md = out.with_suffix(".md").read_text()
    assert "| tiny | 0.01 M | int8 |" in md


def test_bench_precision_help(capsys):
    mod = _load_script()
    try:
        mod.parse_args(["-h"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "--test-limit" in capsys.readouterr().out
