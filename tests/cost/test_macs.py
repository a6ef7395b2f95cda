"""count_macs: exact on a hand-built graph, within 2% of onnx_tool on Conv/Gemm/MatMul."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edge_committee.cost import MacsReport, count_macs  # noqa: E402
from edge_committee.errors import EdgeCommitteeError  # noqa: E402


def _init(name, *shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def _hand_model() -> "onnx.ModelProto":
    """Every counted op type once, with its MACs worked out by hand in HAND."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["y1"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["y1", "w2"], ["y2"], name="dw", group=4),
        helper.make_node("Conv", ["y2", "w3", "b3"], ["y3"], name="grouped", group=2),
        helper.make_node("ConvTranspose", ["y3", "w4"], ["y4"], name="up", strides=[2, 2]),
        helper.make_node("Relu", ["y4"], ["y5"]),
        helper.make_node("GlobalAveragePool", ["y5"], ["y6"]),
        helper.make_node("Flatten", ["y6"], ["f"]),
        helper.make_node("Gemm", ["f", "w5", "b5"], ["g"], name="fc", transB=1),
        helper.make_node("Gemm", ["a6", "w6"], ["g2"], name="fc_ta", transA=1),
        helper.make_node("MatMul", ["g", "w7"], ["m"], name="mm"),
        helper.make_node("MatMul", ["m", "w8"], ["logits"], name="mm_vec"),
        helper.make_node("MatMul", ["z", "w9"], ["zz"], name="bmm"),
    ]
    inits = [
        _init("w1", 4, 3, 3, 3), _init("w2", 4, 1, 3, 3), _init("w3", 8, 2, 1, 1), _init("b3", 8),
        _init("w4", 8, 2, 2, 2), _init("w5", 10, 2), _init("b5", 10), _init("a6", 3, 2), _init("w6", 3, 4),
        _init("w7", 10, 4), _init("w8", 4), _init("w9", 5, 7),
    ]
    graph = helper.make_graph(
        nodes, "hand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 2, 3, 5])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info("g2", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("zz", TensorProto.FLOAT, ["batch", 2, 3, 7])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


HAND = {
    "conv": 4 * 8 * 8 * (3 * 3 * 3),  # Cout*Hout*Wout * Cin*kH*kW = 6912
    "dw": 4 * 6 * 6 * (1 * 3 * 3),  # depthwise: Cin/groups = 1 -> 1296
    "grouped": 8 * 6 * 6 * (2 * 1 * 1),  # 4 in-channels, 2 groups; bias not counted -> 576
    "up": (8 * 6 * 6) * (2 * 2 * 2),  # ConvTranspose: N*Cin*Hin*Win * Cout/g*kH*kW -> 2304
    "fc": 1 * 10 * 2,  # Gemm M*N*K -> 20
    "fc_ta": 2 * 4 * 3,  # transA: A is [K=3, M=2], B [3, 4] -> 24 (no batch dim)
    "mm": 1 * 4 * 10,  # [1,10] @ [10,4] -> 40
    "mm_vec": 1 * 4,  # [1,4] @ [4] -> output [1], K=4 -> 4
    "bmm": (2 * 3 * 7) * 5,  # [1,2,3,5] @ [5,7] -> 210
}


def test_hand_computed_count_is_exact():
    model = _hand_model()
    report = count_macs(model)
    assert isinstance(report, MacsReport)
    assert {n.name: n.macs for n in report.per_node} == HAND
    assert report.total_macs == sum(HAND.values()) == 11386
    assert report.flops == 2 * report.total_macs
    assert report.per_op_type == {
        "Conv": 6912 + 1296 + 576, "ConvTranspose": 2304, "Gemm": 44, "MatMul": 254,
    }
    assert report.other_ops == {"Relu": 1, "GlobalAveragePool": 1, "Flatten": 1}
    assert report.batch == 1
    assert report.to_dict()["flops"] == 22772 and "per_node" not in report.to_dict()
    # the caller's model is not modified
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_reads_files_and_counts_at_a_given_batch(tmp_path):
    path = tmp_path / "hand.onnx"
    onnx.save(_hand_model(), str(path))
    assert count_macs(path).total_macs == 11386
    four = count_macs(str(path), input_shapes={"x": (4, 3, 8, 8), "z": (4, 2, 3, 5)})
    assert four.batch == 4 and four.total_macs == 4 * (11386 - 24) + 24  # fc_ta has no batch


def test_symbolic_spatial_dims_need_input_shapes():
    w = _init("w", 2, 3, 3, 3)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(EdgeCommitteeError, match=r"'x' has unknown dimension\(s\) \[2, 3\]"):
        count_macs(model)
    assert count_macs(model, {"x": (1, 3, 10, 10)}).total_macs == 2 * 8 * 8 * 27
    with pytest.raises(EdgeCommitteeError, match="not graph inputs"):
        count_macs(model, {"image": (1, 3, 10, 10)})


def test_uninferable_shape_names_the_node():
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["h"], domain="acme"),
         helper.make_node("Conv", ["h", "w"], ["y"], name="head_conv")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_init("w", 2, 3, 3, 3)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("acme", 1)]
    )
    with pytest.raises(EdgeCommitteeError, match="cannot infer the shape of 'y' at node 'head_conv'"):
        count_macs(model)


def test_missing_file(tmp_path):
    with pytest.raises(EdgeCommitteeError, match="ONNX file not found"):
        count_macs(tmp_path / "none.onnx")


# --- cross-check against an established counter ---------------------------------------------------


def _onnx_tool_macs(path) -> dict[str, float]:
    """onnx_tool's MACs per op type for Conv/Gemm/MatMul, with its bias adds taken out.

    onnx_tool adds one MAC per output element for a bias input (node.py ConvNode/GemmNode
    .profile); this SDK does not count bias, so the adds are subtracted using onnx_tool's own
    output shapes.
    """
    onnx_tool = pytest.importorskip("onnx_tool")
    model = onnx_tool.Model(str(path), {"verbose": False})
    g = model.graph
    feeds = {}
    for value in onnx.load(str(path)).graph.input:
        dims = value.type.tensor_type.shape.dim
        feeds[value.name] = np.zeros([1] + [d.dim_value for d in dims[1:]], np.float32)
    g.shape_infer(feeds)
    g.profile()
    out: dict[str, float] = {}
    for node in g.nodemap.values():
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            macs = node.macs[0]
            if node.op_type in ("Conv", "Gemm") and len(node.input) == 3:
                macs -= float(np.prod(node.outshape))
            out[node.op_type] = out.get(node.op_type, 0.0) + macs
    return out


def _cnn(torch):
    torch.manual_seed(0)
    c = torch.nn
    return c.Sequential(
        c.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), c.BatchNorm2d(16), c.ReLU6(),
        c.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), c.BatchNorm2d(16), c.ReLU6(),
        c.Conv2d(16, 32, 1, bias=False), c.BatchNorm2d(32), c.ReLU6(),
        c.Conv2d(32, 32, 3, stride=2, padding=1, groups=4), c.Hardswish(),
        c.Conv2d(32, 32, 5, padding=2, groups=32), c.Conv2d(32, 64, 1),
        c.AdaptiveAvgPool2d(1), c.Flatten(), c.Linear(64, 10),
    )


def _mlp(torch):
    class Mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = torch.nn.Linear(8, 32)  # on [N, T, F]: MatMul + Add
            self.fc1 = torch.nn.Linear(6 * 32, 64)  # on [N, F]: Gemm
            self.fc2 = torch.nn.Linear(64, 10, bias=False)

        def forward(self, x):  # x: [N, 6, 8]
            t = self.tok(x)
            t = torch.softmax(t @ t.transpose(1, 2), dim=-1) @ t  # batched MatMul
            return self.fc2(torch.relu(self.fc1(t.flatten(1))))

    torch.manual_seed(0)
    return Mlp()


@pytest.mark.parametrize(
    "build, shape, op_types",
    [(_cnn, (3, 48, 48), {"Conv", "Gemm"}), (_mlp, (6, 8), {"Gemm", "MatMul"})],
    ids=["depthwise_cnn", "mlp"],
)
def test_agrees_with_onnx_tool_within_2_percent(tmp_path, build, shape, op_types):
    torch = pytest.importorskip("torch")
    from edge_committee.export import export_onnx

    path = export_onnx(build(torch), shape, tmp_path / "m.onnx").path
    ours = count_macs(path)
    theirs = _onnx_tool_macs(path)
    assert set(ours.per_op_type) == op_types == set(theirs)
    for op in op_types:
        assert ours.per_op_type[op] == pytest.approx(theirs[op], rel=0.02), op
    assert ours.total_macs == pytest.approx(sum(theirs.values()), rel=0.02)


def test_importing_the_package_does_not_import_onnx_or_torch():
    code = (
        "import sys, edge_committee.cost, edge_committee.export; "
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'safetensors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------- shapes that only a run can tell
def _same_pad_conv_model(h: int = 17, w: int = 23):
    """x -> Pad(pads computed from Shape(x) with Div+Ceil, TF 'same') -> Conv 3x3 stride 2 -> Flatten."""
    from onnx import TensorProto, helper, numpy_helper

    k, s = 3, 2
    c = lambda name, v, dt=np.int64: numpy_helper.from_array(np.asarray(v, dt), name)  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Slice", ["shp", "two", "four"], ["hw"]),
        helper.make_node("Cast", ["hw"], ["hwf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["hwf", "sf"], ["q"]),
        helper.make_node("Ceil", ["q"], ["oh"]),
        helper.make_node("Cast", ["oh"], ["ohi"], to=TensorProto.INT64),
        helper.make_node("Sub", ["ohi", "one"], ["o1"]),
        helper.make_node("Mul", ["o1", "si"], ["o2"]),
        helper.make_node("Add", ["o2", "ki"], ["o3"]),
        helper.make_node("Sub", ["o3", "hw"], ["o4"]),
        helper.make_node("Max", ["o4", "zero"], ["pad"]),
        helper.make_node("Div", ["pad", "twoi"], ["lo"]),
        helper.make_node("Sub", ["pad", "lo"], ["hi"]),
        helper.make_node("Concat", ["zeros2", "lo", "zeros2", "hi"], ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["xp"]),
        helper.make_node("Conv", ["xp", "W"], ["y"], strides=[s, s]),
        helper.make_node("Flatten", ["y"], ["out"]),
    ]
    inits = [c("two", [2]), c("four", [4]), c("sf", [float(s)], np.float32), c("one", [1]), c("si", [s]),
             c("ki", [k]), c("zero", [0]), c("twoi", [2]), c("zeros2", [0, 0]),
             numpy_helper.from_array(np.ones((8, 3, k, k), np.float32), "W")]
    graph = helper.make_graph(nodes, "same_pad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, h, w])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_shape_computed_padding_is_counted_from_one_onnxruntime_run(tmp_path):
    model = _same_pad_conv_model(17, 23)
    report = count_macs(model)
    # 'same' output: ceil(17/2) x ceil(23/2) = 9 x 12, 8 channels, 3*3*3 MACs each
    assert report.shapes_from == "onnxruntime"
    assert report.total_macs == 8 * 9 * 12 * 27
    path = tmp_path / "same.onnx"
    onnx.save(model, str(path))
    assert count_macs(path).total_macs == 8 * 9 * 12 * 27


def test_external_data_model_is_counted(tmp_path):
    model = _same_pad_conv_model(17, 23)
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.onnx.data", size_threshold=0)
    assert (tmp_path / "ext.onnx.data").is_file()
    assert count_macs(tmp_path / "ext.onnx").total_macs == 8 * 9 * 12 * 27
