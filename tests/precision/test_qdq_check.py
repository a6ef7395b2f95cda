"""The Q/DQ checker accepts TensorRT's form and names the node of every violation.

``onnxruntime.quantization.quantize_static``'s defaults (asymmetric activations, per-tensor
weights, int32 biases) are exactly what TensorRT rejects, so they make a realistic bad model.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_committee.errors import EdgeCommitteeError
from edge_committee.precision import QdqError, check_qdq


def qdq_conv(
    act_zp=0,
    act_type=np.int8,
    w_scale_shape=(4,),
    w_axis=0,
    act_scale_shape=(),
    bias_int32=False,
    q_feeds_relu=False,
    drop_act_zp=False,
):
    """input -> Q -> DQ -> Conv(DQ(W int8), bias) -> output, with knobs to break each rule."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.full(act_scale_shape, 0.02, np.float32), "x_scale"),
        numpy_helper.from_array(np.full(act_scale_shape, act_zp, act_type), "x_zp"),
        numpy_helper.from_array(rng.integers(-127, 128, (4, 2, 3, 3)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.full(w_scale_shape, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(w_scale_shape, np.int8), "w_zp"),
        numpy_helper.from_array(np.zeros(4, np.float32), "bias"),
    ]
    x_zp = [] if drop_act_zp else ["x_zp"]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", *x_zp], ["xq"], name="act_q"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", *x_zp], ["xd"], name="act_dq"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="w_dq", axis=w_axis),
    ]
    bias = "bias"
    if bias_int32:
        inits += [
            numpy_helper.from_array(np.zeros(4, np.int32), "b_q"),
            numpy_helper.from_array(np.full(4, 2e-4, np.float32), "b_scale"),
            numpy_helper.from_array(np.zeros(4, np.int32), "b_zp"),
        ]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zp"], ["bd"], name="bias_dq", axis=0))
        bias = "bd"
    if q_feeds_relu:
        nodes.append(helper.make_node("Relu", ["xq"], ["r"], name="int_relu"))
    nodes.append(helper.make_node("Conv", ["xd", "w", bias], ["y"], name="conv", pads=[1, 1, 1, 1]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 5, 5])]
    if q_feeds_relu:
        outputs.append(helper.make_tensor_value_info("r", TensorProto.INT8, ["N", 2, 5, 5]))
    g = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5, 5])],
        outputs, inits,
    )  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_a_good_model_passes_and_is_summarised():
    model = qdq_conv()
    onnx.checker.check_model(model, full_check=True)
    report = check_qdq(model)
    assert report.weights == [("w_dq", "w_q", 0, 4)]
    assert report.activations == ["x"]
    assert report.int8_layers == ["conv"]
    assert report.to_dict()["per_channel_weights"] == 1


@pytest.mark.parametrize(
    "kwargs, node, words",
    [
        (dict(act_zp=3), "act_q", "zero-point is [3]"),
        (dict(w_scale_shape=()), "w_dq", "per-tensor; it must be per-channel on axis 0"),
        (dict(act_zp=128, act_type=np.uint8), "act_q", "uint8, must be int8"),
        (dict(w_axis=1, w_scale_shape=(2,)), "w_dq", "axis 1 with 2 scales; it must be per-channel on axis 0"),
        (dict(act_scale_shape=(2,)), "act_dq", "per-channel (2 scales"),
        (dict(bias_int32=True), "bias_dq", "bias 'b_q' is quantized"),
        (dict(q_feeds_relu=True), "act_q", "feeds Relu 'int_relu'"),
        (dict(drop_act_zp=True), "act_q", "uint8, must be int8"),
    ],
)
def test_violations_name_the_node(kwargs, node, words):
    with pytest.raises(EdgeCommitteeError) as exc:
        check_qdq(qdq_conv(**kwargs))
    msg = str(exc.value)
    assert f"'{node}'" in msg and words in msg, msg


def test_a_model_without_qdq_is_not_int8(tiny_onnx):
    with pytest.raises(EdgeCommitteeError, match="no QuantizeLinear"):
        check_qdq(tiny_onnx)
    check_qdq(tiny_onnx, require_qdq=False)


def test_onnxruntime_defaults_fail_the_checker(tiny_onnx, calib_inputs, tmp_path):
    """quantize_static's defaults (uint8 activations, per-tensor, int32 bias) are caught."""
    from onnxruntime.quantization import quantize_static

    from edge_committee.precision import ArrayCalibrationReader

    out = tmp_path / "ort_default.onnx"
    quantize_static(tiny_onnx, str(out), ArrayCalibrationReader(calib_inputs, "input"))
    with pytest.raises(QdqError) as exc:
        check_qdq(out)
    problems = " ".join(exc.value.problems)
    for words in ("zero-point is", "is quantized per-tensor", "quantized; TensorRT needs float biases"):
        assert words in problems
    assert str(out) in str(exc.value) and f"and {len(exc.value.problems) - 10} more" in str(exc.value)


def test_gemm_without_transpose_wants_axis_1(tmp_path):
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.integers(-127, 128, (6, 3)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.full(3, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(3, np.int8), "w_zp"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="w_dq", axis=1),
        helper.make_node("Gemm", ["x", "w"], ["y"], name="fc"),
    ]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits,
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert check_qdq(model).weights == [("w_dq", "w_q", 1, 3)]
    model.graph.node[1].attribute.append(helper.make_attribute("transB", 1))
    with pytest.raises(EdgeCommitteeError, match="'w_dq'.*must be per-channel on axis 0"):
        check_qdq(model)
