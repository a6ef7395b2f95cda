"""The TensorRT forms of the fused cascade use only what TensorRT's ONNX parser accepts (10.3 .. 11.x).

No TensorRT builder installs here, so this walks the graph (subgraphs included) against the
parser's published support matrix instead of parsing it. Source of :data:`TRT_SUPPORTED`:
``docs/operators.md`` of onnx/onnx-tensorrt at the 10.1-GA release (commit 96e7811, June 2024;
"TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20"), every operator
marked ``Y``: the newest operator table this workplace can read. Later parsers only added support
(onnx-tensorrt release notes up to 11.5-GA: opset 25, ONNX 1.22, ``Squeeze`` without axes; the
TensorRT "ONNX Opset Guide" for 11.x: opsets 9 and above). The table's restrictions that concern
this graph are checked one by one: no ``Compress``; ``Resize`` without antialias; ``axes`` of
Reduce*/Squeeze/Slice/Unsqueeze as initializers; ``ScatterND`` without ``reduction``; ``If``
branches with outputs of equal rank and different names; UINT8 only as the network input; a
custom node only as the ``CascadeGate`` plugin with its ``plugin_version``/``plugin_namespace``; no
float64 tensor (the parser casts DOUBLE down to FLOAT, so PIL-style preprocessing is written in
float32 for TensorRT: ``--preprocess float32``).
"""

from __future__ import annotations


import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from edge_committee.export.cascade_onnx import CascadeDef, MemberSource, Source, build_cascade_model  # noqa: E402
from edge_committee.export.cascade_onnx._graph import walk_nodes  # noqa: E402
from edge_committee.gate.plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION  # noqa: E402
from edge_committee.spec.preprocess import Preprocessing  # noqa: E402

from ..conftest import make_images  # noqa: E402
from .test_cascade_onnx import cnn_member  # noqa: E402

#: onnx-tensorrt docs/operators.md @ 10.1-GA (96e7811), operators marked "Y"
TRT_SUPPORTED = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather GatherElements
GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LRN
LSTM LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool
Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad
ParametricSoftplus Pow QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign Round ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
#: opset range of the oldest parser in scope (TensorRT 10.0+: opsets 9..20) and its ONNX 1.16 IR version
MAX_OPSET, MAX_IR = 20, 10
#: ops whose ``axes`` input (index 1) must be a build-time constant
AXES_INPUT = {"ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean", "ReduceProd", "Squeeze", "Unsqueeze"}


def _constants(graph, outer: set[str]) -> set[str]:
    names = set(outer) | {t.name for t in graph.initializer}
    return names | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def _ranks(graph) -> list[int | None]:
    return [len(o.type.tensor_type.shape.dim) if o.type.tensor_type.HasField("shape") else None for o in graph.output]


def violations(model) -> list[str]:
    """Everything in ``model`` that TensorRT's ONNX parser (10.3 .. 11.x) would refuse."""
    out = []
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset > MAX_OPSET or model.ir_version > MAX_IR:
        out.append(f"opset {opset} / IR {model.ir_version} is newer than TensorRT 10.x parses")
    uint8 = {i.name for i in model.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.UINT8}
    out += _walk(model.graph, set(), uint8)
    double = [t.name for g in _graphs(model.graph) for t in g.initializer if t.data_type == onnx.TensorProto.DOUBLE]
    if double:
        out.append(f"float64 initializers (e.g. {double[0]!r}): TensorRT computes them in float32")
    return out


def _graphs(graph):
    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(a.g)


def _walk(graph, outer_constants: set[str], uint8: set[str]) -> list[str]:
    out, consts = [], _constants(graph, outer_constants)
    for node in graph.node:
        where = f"{node.name} ({node.op_type})"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.domain not in ("", "ai.onnx"):
            if node.op_type != PLUGIN_NAME or attrs.get("plugin_version") != PLUGIN_VERSION.encode() \
                    or attrs.get("plugin_namespace") != PLUGIN_NAMESPACE.encode():
                out.append(f"{where}: custom op that is not the registered CascadeGate plugin")
        elif node.op_type not in TRT_SUPPORTED:
            out.append(f"{where}: not supported by the TensorRT ONNX parser")
        if node.op_type == "Resize" and attrs.get("antialias", 0):
            out.append(f"{where}: antialiasing is not supported")
        if node.op_type in AXES_INPUT | {"Slice"} and len(node.input) > (3 if node.op_type == "Slice" else 1):
            axes = node.input[3] if node.op_type == "Slice" else node.input[1]
            if axes and axes not in consts:
                out.append(f"{where}: axes {axes!r} must be an initializer")
        if node.op_type == "ScatterND" and attrs.get("reduction", b"none") != b"none":
            out.append(f"{where}: ScatterND reduction is not supported")
        if node.op_type == "TopK" and (node.input[1] not in consts or attrs.get("sorted", 1) != 1):
            out.append(f"{where}: K must be an initializer and sorted = 1")
        if node.op_type == "Cast" and attrs.get("to") == onnx.TensorProto.DOUBLE:
            out.append(f"{where}: a cast to float64, which TensorRT computes in float32")
        if any(i in uint8 for i in node.input) and node.op_type != "Cast":
            out.append(f"{where}: UINT8 is only a network input type; cast it first")
        if node.op_type == "If":
            then_g, else_g = attrs["then_branch"], attrs["else_branch"]
            if _ranks(then_g) != _ranks(else_g) or None in _ranks(then_g):
                out.append(f"{where}: branch outputs must have the same (known) ranks")
            if {o.name for o in then_g.output} & {o.name for o in else_g.output}:
                out.append(f"{where}: branch outputs must have different names")
            for sub in (then_g, else_g):
                out += _walk(sub, consts, uint8)
    return out


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[MemberSource]:
    """FP32, FP16 and INT8 (Q/DQ) CNN members, as a bundle deploys them."""
    from edge_committee.precision.fp16 import fp16_from_fp32
    from edge_committee.precision.int8 import int8_from_fp32

    tmp = tmp_path_factory.mktemp("trt")
    pps = [{"size": [8, 8], "color": "gray", "mean": [0.5], "std": [0.25]},
           {"size": [10, 10], "color": "rgb", "scale": 0.0078125, "offset": -1.0, "layout": "NHWC"},
           {"size": [12, 12], "color": "rgb", "resize": "center_crop", "crop_pct": 0.875, "channel_order": "BGR"}]
    fp32 = [cnn_member(tmp / f"m{i}.onnx", pp, seed=i) for i, pp in enumerate(pps)]
    x, _ = make_images(32, 1)
    int8_from_fp32(fp32[0], tmp / "m0.int8.onnx", Preprocessing.from_dict(pps[0])(x))
    fp16_from_fp32(fp32[1], tmp / "m1.fp16.onnx")
    files = [tmp / "m0.int8.onnx", tmp / "m1.fp16.onnx", fp32[2]]
    return [MemberSource(f"m{i}", f, Preprocessing.from_dict(pp)) for i, (f, pp) in enumerate(zip(files, pps))]


def _build(members, form: str, gate: str, preprocess: str = "float32"):
    cascade = CascadeDef([m.name for m in members], [0.6, 0.8])
    return build_cascade_model(members, cascade, Source(24, 32, 3), 4, form=form, gate=gate, preprocess=preprocess)


@pytest.mark.parametrize("form, gate", [("compact", "plugin"), ("mask", "standard")])
def test_tensorrt_forms_use_only_parser_supported_ops(members, form, gate):
    model = _build(members, form, gate)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n, _ in walk_nodes(model.graph)}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "If", "MatMul"} <= ops  # INT8 member and resizes inside
    assert "Compress" not in ops and "Resize" not in ops
    assert (PLUGIN_NAME in ops) == (gate == "plugin")
    assert violations(model) == []


def test_the_check_catches_what_tensorrt_refuses(members):
    # the ONNX Runtime form compacts with Compress, which the parser has no importer for, and
    # resizes PIL-style (rounded passes) in float64
    found = violations(_build(members, "compact", "standard", preprocess="exact"))
    assert any("(Compress): not supported" in v for v in found), found
    assert any("cast to float64" in v for v in found) and any("float64 initializers" in v for v in found)
    bad = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Resize", ["x", "", "s"], ["y"], name="r", mode="linear", antialias=1),
         onnx.helper.make_node("ReduceSum", ["x", "axes"], ["z"], name="sum")], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, 1, 4, 4]),
         onnx.helper.make_tensor_value_info("axes", onnx.TensorProto.INT64, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, None)],
        [onnx.numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], np.float32), "s")]),
        opset_imports=[onnx.helper.make_opsetid("", 21)])
    found = violations(bad)
    assert any("opset 21" in v for v in found)
    assert any("antialiasing" in v for v in found)
    assert any("axes 'axes' must be an initializer" in v for v in found)
    assert any("UINT8 is only a network input" in v for v in found)
