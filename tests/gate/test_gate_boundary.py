"""The exit rule at equality: ``confidence >= threshold`` exits, in every gate implementation.

The cross-implementation tests keep thresholds at least 1e-5 from any confidence, so they cannot
tell ``>=`` from ``>`` (t3 test audit F1: the mutation survived in the NumPy reference and the ONNX
gate). Here the confidence equals the threshold *exactly*, with values every implementation
computes bit-identically: max_prob of saturated logits is 1.0, margin of a tie is 0.0, the
negative entropy of a one-hot softmax is 0.0 and max_prob of a uniform row is float32(1/C).
Each case also checks the next float above the threshold does *not* exit, and the tie's label.
"""

from __future__ import annotations

import numpy as np
import pytest
from gate_cases import HostImpl

from edge_committee.cascade.reference import GateState, gate_step

ONE_HOT = [1000.0, 0.0, 0.0]  # softmax is exactly [1, 0, 0] in float32 (exp(-1000) underflows)
TIE = [5.0, 5.0, 0.0]  # top-2 exactly equal: margin 0, label 0 (ties to the lowest class)
UNIFORM = [0.0, 0.0, 0.0]  # max_prob float32(1/3)

#: (kind, logits row, the confidence it has exactly)
CASES = [
    ("max_prob", ONE_HOT, 1.0),
    ("max_prob", UNIFORM, float(np.float32(1) / np.float32(3))),
    ("margin", TIE, 0.0),
    ("margin", UNIFORM, 0.0),
    ("neg_entropy", ONE_HOT, 0.0),
]


def above(t: float) -> float:
    """The next float32 above ``t`` (what a threshold just past the confidence is in every gate)."""
    return float(np.nextafter(np.float32(t), np.float32(np.inf)))


def run_stage0(impl, row, threshold, kind, num_stages=2):
    logits = np.asarray([row, [0.0, 9.0, 0.0]], np.float32)  # the second sample stays (its conf is lower)
    impl.start(2, 3)
    impl.step(logits, 0, num_stages, threshold, kind)
    return impl.snapshot()


def check_impl(make_impl):
    """Assert the ``>=`` rule for one implementation over every case (and one later stage)."""
    for kind, row, conf in CASES:
        s = run_stage0(make_impl(), row, conf, kind)
        assert s.exit_stage[0] == 0, f"{kind} {row}: confidence == threshold {conf!r} must exit"
        if row == TIE:
            assert s.label[0] == 0, f"{kind}: a tie goes to the lowest class"
        s = run_stage0(make_impl(), row, above(conf), kind)
        assert s.exit_stage[0] == -1 and 0 in s.active, f"{kind} {row}: threshold above {conf!r} must not exit"
    # at stage 1 of 3 the mean of two identical one-hot stages is still exactly 1.0
    impl = make_impl()
    impl.start(1, 3)
    x = np.asarray([ONE_HOT], np.float32)
    impl.step(x, 0, 3, 2.0, "max_prob")
    impl.step(x, 1, 3, 1.0, "max_prob")
    assert impl.snapshot().exit_stage[0] == 1


def test_numpy_reference():
    check_impl(lambda: HostImpl(gate_step))


def test_cpp_cpu_gate(native_ext):
    from edge_committee.gate import gate_step_cpu

    check_impl(lambda: HostImpl(gate_step_cpu))


def test_onnx_gate_standard_ops():
    pytest.importorskip("onnxruntime")
    from test_onnx_gate import OrtImpl

    check_impl(lambda: OrtImpl("float32"))


def test_onnx_mask_gate():
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from edge_committee.gate.onnx_gate import append_mask_gate

    def exits(row, threshold, kind):
        member = helper.make_model(helper.make_graph(
            [helper.make_node("Identity", ["x"], ["logits"])], "m",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])]),
            opset_imports=[helper.make_opsetid("", 17)])
        model = append_mask_gate(member, 0, 2, threshold, kind, logits="logits")
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {}
        s = GateState.start(1, 3)
        for i in sess.get_inputs():
            if i.name == "x":
                feeds[i.name] = np.asarray([row], np.float32)
            else:  # the gate state inputs: fresh state (alive, nothing exited)
                key = i.name.split(".", 1)[-1]
                value = {"prob_sum": s.prob_sum, "label": s.label, "conf": s.conf, "exit_stage": s.exit_stage,
                         "flag": s.flag}.get(key)
                if value is None:
                    value = np.ones([d if isinstance(d, int) else 1 for d in i.shape],
                                    {"tensor(float)": np.float32, "tensor(bool)": bool}.get(i.type, np.int32))
                feeds[i.name] = value
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        stage = next(v for k, v in out.items() if k.endswith("exit_stage_out"))
        return int(np.asarray(stage).reshape(-1)[0]) == 0

    for kind, row, conf in CASES:
        assert exits(row, conf, kind), f"mask gate {kind} {row}: confidence == threshold must exit"
        assert not exits(row, above(conf), kind), f"mask gate {kind} {row}: above must not exit"


def test_learned_gate_with_an_identity_combiner():
    from edge_committee.cascade.learned import Combiner, LearnedGate

    class LearnedImpl(HostImpl):
        def __init__(self):
            gate = LearnedGate([Combiner(np.ones((k + 1, 3), np.float32) / (k + 1), np.zeros(3, np.float32))
                                for k in range(3)])
            super().__init__(gate)
            self.gate = gate

        def start(self, n, c):
            self.state = self.gate.start(n, c)

    check_impl(LearnedImpl)


def test_device_gate_torch_ops():
    torch = pytest.importorskip("torch")
    from edge_committee.backend.device.gate import gate_step_torch

    keys = ("prob_sum", "label", "conf", "exit_stage", "flag")

    class TorchImpl:
        def start(self, n, c):
            s = GateState.start(n, c)
            self.state = {k: torch.from_numpy(getattr(s, k).copy()) for k in keys}
            self.active = torch.from_numpy(s.active.copy())
            self.survivors = torch.full((max(n, 1),), -7, dtype=torch.int32)
            self.count = torch.zeros(1, dtype=torch.int32)

        def step(self, logits, stage, num_stages, threshold, kind):
            gate_step_torch(*(self.state[k] for k in keys), self.active, torch.from_numpy(np.ascontiguousarray(logits)),
                            self.survivors, self.count, stage, num_stages, threshold, kind)
            self.active = self.survivors[: int(self.count[0])].clone()

        def snapshot(self):
            return GateState(active=self.active.numpy().copy(), **{k: v.numpy().copy() for k, v in self.state.items()})

    check_impl(TorchImpl)


def test_selection_statistics():
    from edge_committee.select.stats import SplitOutputs, exit_stages

    for kind, row, conf in CASES:
        logits = {"a": np.asarray([row], np.float32), "b": np.asarray([ONE_HOT], np.float32)}
        out = SplitOutputs(logits, None, kind)
        stats = out.sequence(["a", "b"])
        stage = exit_stages(stats, np.asarray([[conf], [above(conf)]]))
        assert stage[:, 0].tolist() == [0, 1], f"selection stats {kind} {row}: {stage[:, 0].tolist()}"
