"""The example committee builds end to end from its PyTorch members on real Fashion-MNIST.

Runs on a 1,000-image slice of each split to stay fast; the full build is the README's first
command. Needs the Debian package dataset-fashion-mnist (installed by the test command).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from edge_committee.bundle import read_manifest
from edge_committee.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "fashion_mnist" / "committee.yaml"
FMNIST = Path("/usr/share/datasets/fashion-mnist")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FMNIST.is_dir(), reason="needs the Debian package dataset-fashion-mnist"),
]


def build_slice(tmp_path_factory, name: str, n: int, **changes) -> Path:
    """Build the example on the first ``n`` images of validation (train[50000:]) and test."""
    pytest.importorskip("torch")
    import dataclasses

    from edge_committee.pipeline import build

    spec = load_spec(SPEC)
    data = dict(spec.data)
    data["validation"] = {**data["validation"], "start": 50000, "stop": 50000 + n}
    data["test"] = {**data["test"], "stop": n}
    spec = dataclasses.replace(spec, data=data, **changes)
    out = tmp_path_factory.mktemp(name) / "bundle"
    build(spec, out, cache_dir=out.parent / "cache", log=lambda s: None)
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_slice(tmp_path_factory, "fm", 1000)


def test_bundle_has_checked_members(bundle: Path):
    m = read_manifest(bundle)  # every checksum verified
    assert len(m["members"]) >= 5
    for x in m["members"]:
        onnx.checker.check_model(str(bundle / x["file"]), full_check=True)
        assert x["export"]["parity_max_abs_diff"] <= x["export"]["parity_tolerance"]
        assert x["preprocessing"]["color"] == "gray"
    macs = [x["macs"] for x in m["members"]]
    assert max(macs) / min(macs) >= 30  # the family spans at least 30x in MACs


def test_largest_member_is_accurate(bundle: Path):
    m = read_manifest(bundle)
    largest = max(m["members"], key=lambda x: x["macs"])
    assert largest["accuracy"]["test"] >= 0.90


def test_chosen_cascade_within_budget(bundle: Path):
    m = read_manifest(bundle)
    c = m["cascade"]
    largest = max(x["macs"] for x in m["members"])
    assert c["worst_macs"] <= largest
    assert c["mean_macs"] < largest


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory) -> Path:
    train = load_spec(SPEC).data["train"]
    calib = {"source": {"kind": "split", **train}, "count": 256, "seed": 0}
    return build_slice(tmp_path_factory, "fm8", 2000, calibration=calib, precision="int8")


def test_int8_members_pass_the_qdq_checker_or_were_rejected(int8_bundle: Path):
    from edge_committee.precision import check_qdq

    m = read_manifest(int8_bundle)
    int8 = [x for x in m["members"] if x["precision"] == "int8"]
    rejected = [r for r in m["rejected_variants"] if r["precision"] == "int8"]
    assert len(int8) + len(rejected) == 6  # every member was quantized, then kept or rejected
    for x in int8:
        check_qdq(onnx.load(str(int8_bundle / x["file"])))  # raises naming the node
        assert x["calibration"]["count"] == 256 and x["calibration"]["seed"] == 0
        chk = x["precision_check"]
        assert chk["accepted"] and chk["fp32_val_accuracy"] - chk["val_accuracy"] <= 1.0
    for r in rejected:
        assert "points" in r["reason"]  # the gate's numbers are in the report
    report = (int8_bundle / "report.md").read_text()
    for r in rejected:
        assert r["reason"] in report
