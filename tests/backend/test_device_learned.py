"""A learned committee in the device runtime (torch ops, eager on the CPU) against the NumPy reference.

The same stage functions, buffers, buckets, sink rows and survivor fix-up run on the GPU, where
the learned gate is captured into the stage graphs (``test_torch_cuda_gpu.py`` checks that there).
The reference is :func:`edge_committee.cascade.learned.run_learned_cascade` / ``learned_gate_step``.
"""

from __future__ import annotations

import numpy as np
import pytest
from device_cases import ID_PREPROCESSING, TableMember, id_images
from gate_cases import make_logits
from learned_cases import PROB_ATOL, assert_matches_learned, make_learned_case, random_combiners, reference

from edge_committee.cascade.learned import LearnedGateState, learned_gate_step
from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS
from edge_committee.errors import EdgeCommitteeError

torch = pytest.importorskip("torch")

from edge_committee.backend.device import DeviceCascade  # noqa: E402
from edge_committee.backend.device.learned import LearnedTorchGate  # noqa: E402

STATE = ("prob_sum", "label", "conf", "exit_stage", "flag")


def learned_runtime(tables, thresholds, kind, combiners, **options) -> DeviceCascade:
    members = [TableMember(f"m{k}", t) for k, t in enumerate(tables)]
    return DeviceCascade(members, [ID_PREPROCESSING] * len(members), thresholds, kind,
                         [f"c{i}" for i in range(tables[0].shape[1])], device="cpu", combiners=combiners, **options)


# ---------------------------------------------------------------------------------------------- the gate step
@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("n,c", [(0, 5), (1, 1), (1, 10), (37, 7), (300, 33)])
def test_gate_step_matches_reference_state(n, c, dtype, kind):
    """After every stage: survivors, labels, exits, flags, combined probs, log-probabilities, counts."""
    k = 3
    logits, thresholds, combiners = make_learned_case(n + c, n, c, k, kind, dtype=dtype)
    gate = LearnedTorchGate(combiners, "cpu")
    ref = LearnedGateState.start(n, c)
    s = LearnedGateState.start(n, c)
    state = {key: torch.from_numpy(getattr(s, key).copy()) for key in STATE}
    extra = gate.buffers(n, c, "cpu")
    active = torch.from_numpy(s.active.copy())
    survivors, count = torch.full((max(n, 1),), -7, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
    for stage, x in enumerate(logits):
        t = thresholds[stage] if stage < k - 1 else float("inf")
        rows = x[ref.active]
        learned_gate_step(ref, rows, stage, k, t, kind, combiners[stage])
        gate(*(state[key] for key in STATE), active, torch.from_numpy(np.ascontiguousarray(rows)), survivors, count,
             stage, k, t, kind, **extra)
        active = survivors[: int(count[0])].clone()
        where = f"n={n} c={c} {dtype} {kind} stage {stage}"
        assert np.array_equal(active.numpy(), ref.active), f"{where}: survivors differ"
        for key in ("label", "exit_stage", "flag"):
            assert np.array_equal(state[key].numpy(), getattr(ref, key)), f"{where}: {key} differs"
        assert np.array_equal(np.isnan(state["conf"].numpy()), np.isnan(ref.conf)), where
        assert np.abs(state["prob_sum"].numpy() - ref.prob_sum).max(initial=0) <= PROB_ATOL, where
        lp = extra["log_probs"][stage].numpy()  # every row: those that did not run the stage are 0 in both
        # log(sum(exp)) of torch and NumPy differ by an ulp of the log-probability (up to ~30 here)
        assert np.allclose(lp, ref.log_probs[stage], rtol=1e-6, atol=1e-6), f"{where}: log-probs differ"
        assert np.array_equal(extra["contributed"].numpy(), ref.contributed), f"{where}: contributions differ"
    if n >= 37:
        assert len(set(ref.exit_stage.tolist())) == 3 and ref.flag.any(), "the case should exit everywhere, with NaN"


# ---------------------------------------------------------------------------------------------- the runtime
@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
@pytest.mark.parametrize("n", [0, 1, 2, 7, 16, 37])
def test_runtime_matches_reference(n, kind):
    """Exits at every stage, NaN/Inf rows, batch 0/1/odd, a full bucket and a batch over max_batch."""
    tables, thresholds, combiners = make_learned_case(seed=n, n=n, c=6, k=4, kind=kind)
    ref = reference(tables, thresholds, combiners, kind)
    with learned_runtime(tables, thresholds, kind, combiners, max_batch=16) as runtime:
        assert runtime.mode == "eager" and runtime.gate_name == "learned combiner (torch ops)"
        assert runtime.supports_learned_combiner
        pred = runtime.run(id_images(n))
        again = runtime.run(id_images(n))  # state left by the first run must not leak into the second
    assert_matches_learned(pred, ref, f"n={n} {kind}")
    assert_matches_learned(again, ref, f"n={n} {kind} (second run)")
    if n >= 16:
        assert len(set(ref.exit_stage.tolist())) >= (4 if n > 16 else 3), "the case should exit at several stages"
        assert ref.flag.any(), "the case should hold non-finite logits"


def test_every_sample_to_the_last_stage_and_none_past_the_first():
    n, c = 13, 5
    tables = make_logits(3, n, c, 3, "float32", 0.0, 4.0)
    combiners = random_combiners(4, 3, c)
    for t, stages in ((2.0, {2}), (-1.0, {0})):
        with learned_runtime(tables, [t, t], "max_prob", combiners, max_batch=8) as runtime:
            pred = runtime.run(id_images(n))
        assert set(pred.exit_stage.tolist()) == stages
        assert_matches_learned(pred, reference(tables, [t, t], combiners, "max_prob"), f"threshold {t}")


def test_all_non_finite_gives_invalid_labels_and_zero_probs():
    tables = [np.full((5, 3), np.nan, np.float32), np.full((5, 3), -np.inf, np.float32)]
    tables[0][1] = [1.0, 2.0, 3.0]  # one sample has a finite stage 0: it exits there (threshold 0)
    combiners = random_combiners(1, 2, 3)
    with learned_runtime(tables, [0.0], "max_prob", combiners, max_batch=4) as runtime:
        pred = runtime.run(id_images(5))
    ref = reference(tables, [0.0], combiners, "max_prob")
    assert_matches_learned(pred, ref, "non-finite")
    # a flagged row never exits early, even at threshold 0; with no finite stage: label -1, NaN, zeros
    assert pred.exit_stage.tolist() == [1, 0, 1, 1, 1] and pred.flags.tolist() == [1, 0, 1, 1, 1]
    assert pred.labels[[0, 2, 3, 4]].tolist() == [-1] * 4 and pred.labels[1] >= 0
    assert np.isnan(pred.confidence[[0, 2, 3, 4]]).all() and not pred.probs[[0, 2, 3, 4]].any()


def test_tensor_input_stays_on_the_device():
    tables, thresholds, combiners = make_learned_case(seed=2, n=11, c=4, k=3, kind="neg_entropy")
    with learned_runtime(tables, thresholds, "neg_entropy", combiners, max_batch=8) as runtime:
        pred = runtime.run(torch.from_numpy(id_images(11)))
    assert isinstance(pred.probs, torch.Tensor)
    for name in ("labels", "probs", "confidence", "exit_stage", "flags"):
        setattr(pred, name, getattr(pred, name).numpy())
    assert_matches_learned(pred, reference(tables, thresholds, combiners, "neg_entropy"), "tensor input")


def test_bad_combiners_and_the_cuda_kernel_are_refused():
    tables, thresholds, combiners = make_learned_case(seed=0, n=4, c=3, k=2, kind="max_prob")
    with pytest.raises(EdgeCommitteeError, match="one combiner per stage"):
        learned_runtime(tables, thresholds, "max_prob", combiners[:1])
    with pytest.raises(EdgeCommitteeError, match="stage 1's combiner combines 1 members"):
        learned_runtime(tables, thresholds, "max_prob", [combiners[0], combiners[0]])
    with pytest.raises(EdgeCommitteeError, match="averaging kernel"):
        learned_runtime(tables, thresholds, "max_prob", combiners, gate_impl="cuda")
    plain = learned_runtime(tables, thresholds, "max_prob", None)
    assert not plain.supports_learned_combiner  # a runtime without the combiners never runs a learned bundle


def test_warmup_state_is_restored():
    """``preserve`` (around a segment's warm-up on the GPU) restores the learned buffers too."""
    tables, thresholds, combiners = make_learned_case(seed=5, n=9, c=4, k=2, kind="max_prob")
    with learned_runtime(tables, thresholds, "max_prob", combiners, max_batch=16) as runtime:
        runtime.run(id_images(9))
        ctx = next(iter(runtime._contexts.values()))
        before = {k: v.clone() for k, v in ctx.gate_buffers.items()}
        with ctx.preserve():
            for v in ctx.gate_buffers.values():
                v.fill_(np.nan)
        assert set(before) == {"log_probs", "contributed"}
        for k, v in ctx.gate_buffers.items():
            assert torch.equal(v, before[k]), k


# ---------------------------------------------------------------------------------------------- a built bundle
def test_built_bundle_on_torch_cuda_cpu_equals_the_reference(built_learned_bundle):
    """build -> select (learned) -> ec.load(backend='torch-cuda', device='cpu').predict = the NumPy reference."""
    import importlib.util

    import edge_committee as ec
    from edge_committee.bundle import read_manifest
    from edge_committee.cascade.learned import run_learned_cascade
    from edge_committee.cascade.learned_onnx import combiner_from_onnx

    if importlib.util.find_spec("onnx2torch") is None:
        pytest.skip("needs onnx2torch (the test extra)")
    c = read_manifest(built_learned_bundle)["cascade"]
    assert c["kind"] in ("learned_cascade", "learned_ensemble") and len(c["members"]) >= 2
    combiners = [combiner_from_onnx(built_learned_bundle / f) for f in c["combiner"]["files"]]
    with np.load(built_learned_bundle / "outputs.npz") as z:
        logits = [z[f"{n}/test"] for n in c["members"]]
    want = run_learned_cascade(logits, c["thresholds"], combiners, c["confidence"])
    images = np.load(built_learned_bundle.parent / "test.npz")["x"]
    with ec.load(built_learned_bundle, backend="torch-cuda", device="cpu", max_batch=32) as model:
        assert model.executor.gate_name == "learned combiner (torch ops)"
        got = model.predict(images)
    assert set(want.exit_stage.tolist()) == set(range(len(c["members"]))), "the cascade should exit at every stage"
    # onnx2torch's members differ from ONNX Runtime's by ~1e-6 in the logits: no sample is that close
    # to a threshold here (checked by the exact equalities), and probabilities agree to 1e-5
    np.testing.assert_array_equal(got.exit_stage, want.exit_stage)
    np.testing.assert_array_equal(got.labels, want.label)
    np.testing.assert_array_equal(got.flags, want.flag)
    np.testing.assert_allclose(got.probs, want.probs, atol=1e-5)


def test_tensorrt_whole_engine_refuses_a_learned_committee():
    from types import SimpleNamespace

    from edge_committee.backend.tensorrt.adapter import cascade_executor

    with pytest.raises(EdgeCommitteeError, match="drop whole=True"):
        cascade_executor(SimpleNamespace(combiner={"files": ["combiner/stage0.onnx"]}), whole=True)
