"""The gate in ONNX: the standard-op form under ONNX Runtime vs the NumPy reference; the plugin node."""

from __future__ import annotations

import numpy as np
import pytest
from gate_cases import make_logits, make_logits_nonfinite_stages, run_and_compare
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_committee.cascade.reference import CONFIDENCE_CODES, CONFIDENCE_FUNCTIONS, GateState
from edge_committee.gate import GATE_INPUTS, GATE_OUTPUTS, append_gate, make_gate_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

STATE = ("prob_sum", "label", "conf", "exit_stage", "flag")


class OrtImpl:
    """The standard-op gate model, one session per stage, fed its own previous outputs."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype

    def start(self, n: int, c: int) -> None:
        s = GateState.start(n, c)
        self.c = c
        self.state = {name: getattr(s, name) for name in STATE}
        self.active = s.active

    def step(self, logits, stage, num_stages, threshold, kind):
        model = make_gate_model(self.c, stage, num_stages, threshold, kind, logits_dtype=self.dtype,
                                use_plugin=False)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {"logits": np.ascontiguousarray(logits, self.dtype), "gate.active": self.active}
        feeds.update({f"gate.{k}": v for k, v in self.state.items()})
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        self.state = {k: out[f"gate.{k}_out"] for k in STATE}
        self.active = out["gate.survivors"]
        assert out["gate.num_survivors"].shape == () and out["gate.num_survivors"].dtype == np.int32
        assert int(out["gate.num_survivors"]) == self.active.size

    def snapshot(self) -> GateState:
        return GateState(active=self.active, **{k: v.copy() for k, v in self.state.items()})


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 64),
    c=st.integers(1, 24),
    k=st.integers(1, 3),
    dtype=st.sampled_from(["float32", "float16"]),
    kind=st.sampled_from(CONFIDENCE_FUNCTIONS),
    seed=st.integers(0, 2**32 - 1),
    nonfinite=st.sampled_from([0.0, 0.1]),
    quantiles=st.lists(st.floats(0, 1), min_size=2, max_size=2),
)
def test_standard_ops_match_reference_under_onnxruntime(n, c, k, dtype, kind, seed, nonfinite, quantiles):
    logits = make_logits(seed, n, c, k, dtype, nonfinite, 4.0)
    run_and_compare(OrtImpl(dtype), logits, kind, quantiles)


@settings(max_examples=10, deadline=None)
@given(
    n=st.integers(1, 48),
    c=st.integers(1, 16),
    k=st.integers(2, 3),
    kind=st.sampled_from(CONFIDENCE_FUNCTIONS),
    seed=st.integers(0, 2**32 - 2),
)
def test_standard_ops_nonfinite_rows_across_stages(n, c, k, kind, seed):
    """Finding 19: the standard-op gate divides by the stages that contributed, as the reference."""
    run_and_compare(OrtImpl("float32"), make_logits_nonfinite_stages(seed, n, c, k, "float32", 3.0), kind, [0.5, 0.3])


@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
def test_standard_ops_1000_classes(kind):
    run_and_compare(OrtImpl("float32"), make_logits(3, 96, 1000, 2, "float32", 0.05, 8.0), kind, [0.5])


def _member(opset: int = 17, classes: int = 5, features: int = 6):
    """A tiny member: features [M, F] -> MatMul -> logits [M, C]."""
    rng = np.random.default_rng(0)
    w = onnx.numpy_helper.from_array(rng.standard_normal((features, classes)).astype(np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["logits"])], "member",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", features])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", classes])], [w])
    opsets = [onnx.helper.make_opsetid("", opset)]
    ir_version = onnx.helper.find_min_ir_version_for(opsets)  # loadable by older onnxruntime releases too
    return onnx.helper.make_model(graph, opset_imports=opsets, ir_version=ir_version), w


@pytest.mark.parametrize("opset", [13, 17, 18])
def test_append_standard_gate_to_a_member_runs(opset):
    member, w = _member(opset)
    model = append_gate(member, 0, 2, 0.6, "max_prob", use_plugin=False, num_samples=7)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32) * 3
    active = np.array([6, 0, 3, 5], np.int32)
    s = GateState.start(7, 5)
    feeds = {"x": x, "gate.active": active, **{f"gate.{k}": getattr(s, k) for k in STATE}}
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    from edge_committee.cascade.reference import gate_step

    s.active = active
    gate_step(s, x @ onnx.numpy_helper.to_array(w), 0, 2, 0.6)
    assert np.array_equal(out["gate.survivors"], s.active)
    assert np.array_equal(out["gate.label_out"], s.label)
    np.testing.assert_allclose(out["gate.prob_sum_out"], s.prob_sum, atol=1e-6)
    assert "logits" not in out  # replaced by the gate outputs


def test_plugin_node_has_what_the_tensorrt_parser_needs():
    member, _ = _member()
    model = append_gate(member, 1, 3, 0.75, "margin", num_samples="N")
    onnx.checker.check_model(model, full_check=True)
    node = model.graph.node[-1]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert node.op_type == "CascadeGate" and node.domain == "edge_committee"
    assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b"edge_committee"
    assert attrs["stage"] == 1 and attrs["num_stages"] == 3 and attrs["confidence"] == CONFIDENCE_CODES["margin"]
    assert attrs["threshold"] == pytest.approx(0.75)
    assert {(o.domain, o.version) for o in model.opset_import} >= {("edge_committee", 1)}
    assert list(node.input) == ["logits"] + [f"gate.{k}" for k in GATE_INPUTS]
    assert list(node.output) == [f"gate.{k}" for k in GATE_OUTPUTS]
    types = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert all(t in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT32) for t in types.values())  # no BOOL/UINT8
    survivors = next(o for o in model.graph.output if o.name == "gate.survivors")
    assert survivors.type.tensor_type.shape.dim[0].dim_param  # data-dependent size


def test_gate_model_uses_the_lowest_ir_version_for_its_opset():
    model = make_gate_model(10, 0, 2, 0.5, use_plugin=False, opset=17)
    assert model.ir_version == onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", 17)])


def test_fp16_member_logits_are_accepted_by_both_forms():
    model = make_gate_model(10, 0, 2, 0.5, logits_dtype="float16", use_plugin=True)
    onnx.checker.check_model(model)
    model = make_gate_model(10, 0, 2, 0.5, logits_dtype="float16", use_plugin=False)
    onnx.checker.check_model(model)


def test_bad_requests_are_explained():
    member, _ = _member(opset=11)
    with pytest.raises(ValueError, match="opset >= 13"):
        append_gate(member, 0, 2, 0.5, use_plugin=False)
    with pytest.raises(ValueError, match="no tensor named"):
        append_gate(member, 0, 2, 0.5, logits="nope")
    with pytest.raises(ValueError, match="outside"):
        append_gate(member, 2, 2, 0.5)


@pytest.mark.parametrize("classes", [1, 2, 3])
@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
def test_few_classes_match_the_reference(kind, classes):
    """The margin of a one-class row is its probability, of a two-class row the difference of both
    (not the larger): drawn too rarely by the random comparison (mutation run, docs/mutation_testing.md)."""
    ref = run_and_compare(OrtImpl("float32"), make_logits(7, 40, classes, 3, "float32", 0.0, 3.0), kind, [0.5, 0.3])
    assert ref.active.size == 0
