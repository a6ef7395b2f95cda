"""The accuracy gate and make_precision_variants: files, numbers, fallback INT8 -> FP16 -> FP32."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_committee.calibration import CalibrationConfig, CalibrationRecord, CalibrationSample
from edge_committee.data.readers import RawSplit
from edge_committee.errors import EdgeCommitteeError, SpecError
from edge_committee.precision import (
    check_qdq,
    choose_variant,
    gate,
    make_precision_variants,
    resolve_precisions,
    top1_accuracy,
)

from .conftest import make_images


@pytest.fixture(scope="module")
def calib_sample() -> CalibrationSample:
    x, y = make_images(128, seed=11)
    record = CalibrationRecord(
        source={"kind": "test"}, files=(), indices=tuple(range(128)), count=128, seed=0
    )
    return CalibrationSample(x, y, record)


def test_top1_and_gate_numbers():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    assert top1_accuracy(logits, np.array([0, 1, 1, 1])) == 75.0
    ok = gate("int8", 89.5, 90.0, 1.0)
    assert ok.accepted and "89.50%" in ok.reason and "90.00%" in ok.reason
    bad = gate("int8", 88.5, 90.0, 1.0)
    assert not bad.accepted and bad.loss_pts == pytest.approx(1.5)
    assert bad.reason.startswith("rejected") and "+1.50 points" in bad.reason and "tolerance 1.00" in bad.reason


def test_resolve_precisions():
    assert resolve_precisions("int8") == ("int8", "fp16", "fp32")
    assert resolve_precisions("fp16") == ("fp16", "fp32")
    assert resolve_precisions("fp32") == ("fp32",)
    assert set(resolve_precisions("auto")) == {"fp32", "fp16", "int8"}
    with pytest.raises(SpecError, match="int4"):
        resolve_precisions("int4")


def test_auto_builds_all_three(tiny_onnx, preprocessing, val_split, calib_sample, tmp_path):
    vs = make_precision_variants(
        tiny_onnx, preprocessing, val_split, calib_sample, "auto", tmp_path, "n0", threads=1
    )
    assert [v.precision for v in vs] == ["fp32", "fp16", "int8"]
    assert [v.path.name for v in vs] == ["n0.fp32.onnx", "n0.fp16.onnx", "n0.int8.onnx"]
    assert all(v.accepted for v in vs), [v.reason for v in vs]
    assert vs[0].val_accuracy >= 95.0
    for v in vs:
        assert v.val_logits.shape == (len(val_split), 4) and v.val_logits.dtype == np.float32
        assert abs(v.val_accuracy - vs[0].val_accuracy) <= 1.0
    check_qdq(vs[2].path)
    d = json.loads(json.dumps([v.to_dict(tmp_path) for v in vs]))
    assert d[2]["file"] == "n0.int8.onnx" and d[2]["calibration"]["method"] == "minmax"
    assert d[2]["calibration"]["count"] == 128 and d[0]["calibration"] is None
    assert d[2]["quantization"]["qdq"]["per_channel_weights"] == 4
    assert len(d[1]["sha256"]) == 64
    assert choose_variant(vs, "int8").precision == "int8"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_single_mode_stops_at_the_first_accepted(tiny_onnx, preprocessing, val_split, calib_sample, tmp_path):
    vs = make_precision_variants(
        tiny_onnx, preprocessing, val_split, calib_sample, "int8", tmp_path, "n0", threads=1
    )
    assert [v.precision for v in vs] == ["fp32", "int8"]  # FP16 never built
    assert not (tmp_path / "n0.fp16.onnx").exists()
    vs = make_precision_variants(tiny_onnx, preprocessing, val_split, None, "fp16", tmp_path, "n0")
    assert [v.precision for v in vs] == ["fp32", "fp16"]


def test_hurtful_quantization_is_rejected_and_falls_back_to_fp16(
    outlier_onnx, preprocessing, val_split, calib_sample, tmp_path
):
    vs = make_precision_variants(
        outlier_onnx, preprocessing, val_split, calib_sample, "int8", tmp_path, "bad", threads=1
    )
    assert [v.precision for v in vs] == ["fp32", "int8", "fp16"]
    fp32, int8, fp16 = vs
    assert not int8.accepted and fp16.accepted
    assert int8.val_accuracy < fp32.val_accuracy - 20
    assert f"{int8.val_accuracy:.2f}%" in int8.reason and f"{fp32.val_accuracy:.2f}%" in int8.reason
    assert "rejected" in int8.reason and "tolerance 1.00" in int8.reason
    assert "second try" in int8.reason  # sensitive nodes in float did not save it either
    assert choose_variant(vs, "int8") is fp16
    assert int8.to_dict()["accepted"] is False


def test_negative_tolerance_rejects_everything_but_fp32(
    tiny_onnx, preprocessing, val_split, calib_sample, tmp_path
):
    vs = make_precision_variants(
        tiny_onnx, preprocessing, val_split, calib_sample, "int8", tmp_path, "n0",
        tolerance_pts=-5.0, retry_int8_without_sensitive=False,
    )  # fmt: skip
    assert [(v.precision, v.accepted) for v in vs] == [("fp32", True), ("int8", False), ("fp16", False)]
    assert all("tolerance -5.00" in v.reason for v in vs[1:])
    assert choose_variant(vs, "int8").precision == "fp32"


def test_reuses_given_fp32_logits(tiny_onnx, preprocessing, val_split, tmp_path):
    fake = np.zeros((len(val_split), 4), np.float32)
    fake[:, 1] = 1.0
    vs = make_precision_variants(
        tiny_onnx, preprocessing, val_split, precisions=["fp32"], out_dir=tmp_path,
        fp32_val_logits=fake,
    )  # fmt: skip
    assert vs[0].val_accuracy == pytest.approx(100.0 * np.mean(val_split.labels == 1))
    with pytest.raises(EdgeCommitteeError, match="rows"):
        make_precision_variants(
            tiny_onnx, preprocessing, val_split, precisions=["fp32"], out_dir=tmp_path,
            fp32_val_logits=fake[:3],
        )  # fmt: skip


def test_user_errors(tiny_onnx, preprocessing, val_split, tmp_path):
    unlabeled = RawSplit(val_split.images, None, [])
    with pytest.raises(EdgeCommitteeError, match="labelled"):
        make_precision_variants(tiny_onnx, preprocessing, unlabeled, out_dir=tmp_path)
    with pytest.raises(EdgeCommitteeError, match="calibration"):
        make_precision_variants(tiny_onnx, preprocessing, val_split, None, "int8", tmp_path)


def test_calibration_config_is_read_with_the_members_preprocessing(
    tiny_onnx, preprocessing, val_split, tmp_path
):
    x, y = make_images(64, seed=3)
    np.savez(tmp_path / "calib.npz", x=x, y=y)
    cfg = CalibrationConfig.from_dict(
        {"source": {"kind": "array", "path": "calib.npz"}, "count": 32, "seed": 1}, tmp_path
    )
    vs = make_precision_variants(
        tiny_onnx, preprocessing, val_split, cfg, ["int8"], tmp_path / "out", "m", int8_method="entropy"
    )
    rec = vs[-1].calibration
    assert rec["count"] == 32 and rec["seed"] == 1 and rec["method"] == "entropy" and rec["stratified"]
    assert rec["files"][0]["path"].endswith("calib.npz") and len(rec["indices"]) == 32


def test_fp16_overflow_is_caught(tmp_path, preprocessing, val_split):
    """|activation| > 65504 overflows float16; ONNX Runtime's full optimisation on a CPU would
    hide it (it runs the FP16 file in float32), so the gate evaluates FP16 keeping the Casts."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 256)).astype(np.float32), "W")
    inits = [w] + [numpy_helper.from_array(np.array(v, np.float32), n)
                   for n, v in (("big", 300.0), ("small", 1 / 9e4))]  # fmt: skip
    nodes = [
        helper.make_node("Flatten", ["input"], ["f"]),
        helper.make_node("Mul", ["f", "big"], ["a"]),
        helper.make_node("Mul", ["a", "big"], ["b"]),  # up to ~3e5: inf in float16
        helper.make_node("Mul", ["b", "small"], ["c"]),
        helper.make_node("Gemm", ["c", "W"], ["logits"], transB=1),
    ]
    g = helper.make_graph(
        nodes, "overflow", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits,
    )  # fmt: skip
    src = tmp_path / "ovf.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    labels = np.argmax(_run_logits(src, preprocessing(val_split.images)), axis=1)
    split = RawSplit(val_split.images, labels, [])
    vs = make_precision_variants(src, preprocessing, split, None, "fp16", tmp_path, "ovf")
    assert [(v.precision, v.accepted) for v in vs] == [("fp32", True), ("fp16", False)], vs[1].reason
    assert vs[1].max_abs_diff == np.inf
    from edge_committee.precision import evaluate_onnx

    hidden = evaluate_onnx(vs[1].path, split.images, preprocessing)  # full optimisation
    assert np.isfinite(hidden).all()  # ... would not have shown the overflow


def _run_logits(path, x):
    from edge_committee.backend.onnxrt import OnnxrtRunner

    with OnnxrtRunner(path, threads=1) as r:
        return r.infer(x)
