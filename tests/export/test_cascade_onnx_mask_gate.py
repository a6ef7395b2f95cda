"""The mask gate (``onnx_gate.append_mask_gate``, static shapes) equals the NumPy reference cascade."""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS, contributions, run_cascade

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edge_committee.gate.onnx_gate import MASK_GATE_INPUTS, MASK_GATE_OUTPUTS, append_mask_gate  # noqa: E402

STATE = ("prob_sum", "label", "conf", "exit_stage", "flag")


def gate_session(classes: int, stage: int, stages: int, threshold: float, kind: str, dtype: int):
    graph = onnx.helper.make_graph([], "g", [onnx.helper.make_tensor_value_info("logits", dtype, ["N", classes])],
                                   [onnx.helper.make_tensor_value_info("logits", dtype, ["N", classes])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    model = append_mask_gate(model, stage, stages, threshold, kind, logits="logits", num_samples="N")
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def mask_cascade(logits: list[np.ndarray], thresholds: list[float], kind: str, dtype=np.float32) -> dict:
    """Run the mask gate stage by stage over all rows; returns the final state."""
    n, c = logits[0].shape
    state = {"alive": np.ones(n, bool), "prob_sum": np.zeros((n, c), np.float32), "label": np.full(n, -1, np.int32),
             "conf": np.full(n, np.nan, np.float32), "exit_stage": np.full(n, -1, np.int32),
             "flag": np.zeros(n, np.int32)}
    elem = onnx.TensorProto.FLOAT16 if dtype == np.float16 else onnx.TensorProto.FLOAT
    for k, lg in enumerate(logits):
        t = thresholds[k] if k < len(thresholds) else np.inf
        sess = gate_session(c, k, len(logits), t, kind, elem)
        feeds = {"logits": lg.astype(dtype), **{f"gate.{key}": state[key] for key in MASK_GATE_INPUTS}}
        out = dict(zip([f"gate.{o}" for o in MASK_GATE_OUTPUTS], sess.run(None, feeds)))
        state = {key: out[f"gate.{key}_out"] for key in ("alive",) + STATE}
        assert bool(out["gate.any_alive"]) == bool(state["alive"].any())
    assert not state["alive"].any()  # the last stage lets everyone out
    return state


@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_mask_gate_equals_reference(kind, dtype):
    rng = np.random.default_rng(len(kind))
    n, c, k = 400, 7, 3
    logits = [(rng.standard_normal((n, c)) * rng.uniform(0.3, 4, (n, 1))).astype(dtype).astype(np.float32)
              for _ in range(k)]
    for lg in logits:  # about 8% of rows per stage hold NaN or +-inf, rows 0..3 at every stage
        bad = np.union1d(np.flatnonzero(rng.random(n) < 0.08), np.arange(4))
        lg[bad, rng.integers(c, size=bad.size)] = rng.choice([np.nan, np.inf, -np.inf], bad.size)
    confs = {"max_prob": (0.45, 0.6), "margin": (0.3, 0.4), "neg_entropy": (-1.2, -0.9)}[kind]
    ref = run_cascade(logits, list(confs), kind)
    got = mask_cascade(logits, list(confs), kind, dtype)
    assert (ref.flag == 1).sum() > 50 and (ref.label == -1).sum() >= 1 and len(set(ref.exit_stage)) == 3
    np.testing.assert_array_equal(got["exit_stage"], ref.exit_stage)
    np.testing.assert_array_equal(got["label"], ref.label)
    np.testing.assert_array_equal(got["flag"], ref.flag)
    np.testing.assert_array_equal(np.isnan(got["conf"]), np.isnan(ref.confidence))
    np.testing.assert_allclose(got["conf"], ref.confidence, atol=1e-5)
    np.testing.assert_allclose(got["prob_sum"] / contributions(got["prob_sum"])[:, None], ref.probs, atol=1e-6)


def test_mask_gate_on_an_empty_batch():
    got = mask_cascade([np.zeros((0, 3), np.float32)] * 2, [0.5], "max_prob")
    assert got["label"].shape == (0,) and got["prob_sum"].shape == (0, 3)


@pytest.mark.parametrize("classes", [1, 2, 3])
@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
def test_mask_gate_with_few_classes(kind, classes):
    """One- and two-class rows (the margin's special cases; mutation run, docs/mutation_testing.md)."""
    rng = np.random.default_rng(classes)
    logits = [(rng.standard_normal((40, classes)) * 3).astype(np.float32) for _ in range(2)]
    t = {"max_prob": 0.8, "margin": 0.5, "neg_entropy": -0.4}[kind]
    ref = run_cascade(logits, [t], kind)
    got = mask_cascade(logits, [t], kind)
    assert classes == 1 or 0 < (ref.exit_stage == 0).sum() < 40  # both stages used
    np.testing.assert_array_equal(got["exit_stage"], ref.exit_stage)
    np.testing.assert_array_equal(got["label"], ref.label)
    np.testing.assert_allclose(got["conf"], ref.confidence, atol=1e-6)
    np.testing.assert_allclose(got["prob_sum"] / contributions(got["prob_sum"])[:, None], ref.probs, atol=1e-6)


@pytest.mark.parametrize("survivors", [0, 1, 2])
def test_any_alive_counts_a_single_survivor(survivors):
    """``any_alive`` (which skips the next member in the fused file) is true for exactly one row left."""
    sure, unsure = [12.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    first = np.array([unsure] * survivors + [sure] * (3 - survivors), np.float32)
    got = mask_cascade([first, first], [0.9], "max_prob")  # asserts any_alive == alive.any() at each stage
    assert list(got["exit_stage"]) == [1] * survivors + [0] * (3 - survivors)
