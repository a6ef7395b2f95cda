"""INT8: every method yields Q/DQ that the checker accepts; calibration is deterministic."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_committee.backend.onnxrt import OnnxrtRunner
from edge_committee.errors import EdgeCommitteeError, SpecError
from edge_committee.precision import (
    ArrayCalibrationReader,
    Int8Config,
    check_qdq,
    int8_from_fp32,
    qdq_scales,
    sensitive_nodes,
)
from edge_committee.precision.int8 import even_batch_size

METHODS = ("minmax", "entropy", "percentile")


def _run(path, x):
    with OnnxrtRunner(path, threads=1) as r:
        return r.infer(x)


@pytest.fixture(scope="module")
def int8_models(tiny_onnx, calib_inputs, tmp_path_factory):
    d = tmp_path_factory.mktemp("int8")
    out = {}
    for method in METHODS:
        path = d / f"tiny.{method}.int8.onnx"
        info = int8_from_fp32(tiny_onnx, path, calib_inputs, Int8Config(method=method))
        out[method] = (path, info)
    return out


@pytest.mark.parametrize("method", METHODS)
def test_every_method_passes_the_qdq_checker(int8_models, method):
    path, info = int8_models[method]
    report = check_qdq(path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    # all four weighted layers (stem, depthwise, pointwise, classifier) have INT8 weights
    assert len(report.weights) == 4
    assert all(axis == 0 for _, _, axis, _ in report.weights)
    assert info["qdq"]["per_channel_weights"] == 4
    assert info["config"]["method"] == method


@pytest.mark.parametrize("method", METHODS)
def test_int8_form_is_what_tensorrt_takes(int8_models, method):
    """Independently of the checker: int8 zero-points of 0, scalar activation scales."""
    m = onnx.load(str(int8_models[method][0]))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    qdq = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for n in qdq:
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
        if n.input[0] not in inits:  # activation
            assert inits[n.input[1]].size == 1, n.name
    # no Q/DQ on the logits, no quantized bias
    assert m.graph.output[0].name not in {n.input[0] for n in qdq}
    assert all(inits[n.input[0]].dtype == np.int8 for n in qdq if n.input[0] in inits)


@pytest.mark.parametrize("method", METHODS)
def test_int8_accuracy_close_to_fp32(int8_models, tiny_onnx, calib_inputs, method):
    ref = _run(tiny_onnx, calib_inputs).argmax(1)
    got = _run(int8_models[method][0], calib_inputs).argmax(1)
    assert np.mean(ref == got) >= 0.95


@pytest.mark.parametrize("method", METHODS)
def test_calibrating_twice_gives_identical_scales(tiny_onnx, calib_inputs, tmp_path, method):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    int8_from_fp32(tiny_onnx, a, calib_inputs, Int8Config(method=method))
    int8_from_fp32(tiny_onnx, b, calib_inputs, Int8Config(method=method))
    sa, sb = qdq_scales(a), qdq_scales(b)
    assert sa and sa == sb
    assert a.read_bytes() == b.read_bytes()


def test_minmax_scales_do_not_depend_on_the_batch_size(tiny_onnx, calib_inputs, tmp_path):
    int8_from_fp32(tiny_onnx, tmp_path / "a.onnx", calib_inputs, Int8Config(batch_size=32))
    int8_from_fp32(tiny_onnx, tmp_path / "b.onnx", calib_inputs, Int8Config(batch_size=5))
    assert qdq_scales(tmp_path / "a.onnx") == qdq_scales(tmp_path / "b.onnx")


@pytest.mark.parametrize("method", ("entropy", "percentile"))
def test_histogram_methods_take_a_count_no_batch_divides(tiny_onnx, calib_inputs, tmp_path, method):
    """onnxruntime's histogram calibrators fail on a short last batch; 101 is prime."""
    out = tmp_path / "p.onnx"
    int8_from_fp32(tiny_onnx, out, calib_inputs[:101], Int8Config(method=method, batch_size=32))
    check_qdq(out)


def test_even_batch_size():
    assert [even_batch_size(n, 32) for n in (128, 100, 101, 7, 0)] == [32, 25, 1, 7, 1]


def test_different_calibration_data_changes_activation_scales(tiny_onnx, calib_inputs, tmp_path):
    int8_from_fp32(tiny_onnx, tmp_path / "a.onnx", calib_inputs)
    int8_from_fp32(tiny_onnx, tmp_path / "b.onnx", calib_inputs[:8] * 0.5)
    assert qdq_scales(tmp_path / "a.onnx") != qdq_scales(tmp_path / "b.onnx")


def test_sensitive_nodes_stay_float(tiny_onnx, calib_inputs, tmp_path):
    first_conv, classifier = sensitive_nodes(tiny_onnx)
    m = onnx.load(tiny_onnx)
    assert [n.op_type for n in m.graph.node if n.name in (first_conv, classifier)] == ["Conv", "Gemm"]
    out = tmp_path / "s.onnx"
    info = int8_from_fp32(tiny_onnx, out, calib_inputs, Int8Config(exclude="sensitive"))
    assert info["excluded_nodes"] == [first_conv, classifier]
    report = check_qdq(out)
    assert first_conv not in report.int8_layers and classifier not in report.int8_layers
    assert len(report.int8_layers) == 2  # depthwise and pointwise
    q = onnx.load(str(out))
    inits = {t.name for t in q.graph.initializer}
    node = next(n for n in q.graph.node if n.name == first_conv)
    assert node.input[1] in inits  # the float weight, no DequantizeLinear in front


def test_named_node_exclusion_and_unknown_name(tiny_onnx, calib_inputs, tmp_path):
    m = onnx.load(tiny_onnx)
    pw = [n.name for n in m.graph.node if n.op_type == "Conv"][2]
    info = int8_from_fp32(tiny_onnx, tmp_path / "n.onnx", calib_inputs, Int8Config(exclude=[pw]))
    assert pw not in check_qdq(tmp_path / "n.onnx").int8_layers
    assert info["excluded_nodes"] == [pw]
    with pytest.raises(EdgeCommitteeError, match="no_such_node"):
        int8_from_fp32(tiny_onnx, tmp_path / "x.onnx", calib_inputs, Int8Config(exclude=["no_such_node"]))
    assert not (tmp_path / "x.onnx").exists()


def test_config_validation():
    with pytest.raises(SpecError, match="kl"):
        Int8Config(method="kl")
    with pytest.raises(SpecError, match="percentile"):
        Int8Config(method="percentile", percentile=30)
    assert Int8Config(exclude="sensitive").exclude == ("sensitive",)


def test_array_reader_batches_and_rewinds():
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    r = ArrayCalibrationReader(x, "input", batch_size=4)
    sizes = [len(b["input"]) for b in r]
    assert sizes == [4, 4, 2] and len(r) == 10
    r.rewind()
    assert np.array_equal(r.get_next()["input"], x[:4])
    r.set_range(8, 20)
    assert np.array_equal(r.get_next()["input"], x[8:])
    assert r.get_next() is None
    with pytest.raises(EdgeCommitteeError):
        ArrayCalibrationReader(x[:0], "input")


def test_matmul_weights_are_per_channel_on_the_last_axis(tmp_path):
    """A MatMul classifier with a (K, N) constant weight: axis 1 = output features."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(6, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(size=(3,)).astype(np.float32), "B")
    g = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["h"], name="relu"),
            helper.make_node("MatMul", ["h", "W"], ["mm"], name="classifier"),
            helper.make_node("Add", ["mm", "B"], ["y"], name="bias"),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [w, b],
    )
    src = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    out = tmp_path / "mlp.int8.onnx"
    int8_from_fp32(src, out, rng.normal(size=(32, 6)).astype(np.float32))
    report = check_qdq(out)
    assert [(axis, ch) for _, name, axis, ch in report.weights if "W" in name] == [(1, 3)]
