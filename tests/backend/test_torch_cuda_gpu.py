"""The device runtime on a GPU: CUDA graphs, conditional IF nodes, the CUDA gate. Skips without a GPU.

1. Cascades with known logits (:mod:`device_cases`): every mode and gate against the NumPy
   reference, with NaN/Inf rows, batch 0, 1, odd, over ``max_batch``, nobody or everybody exiting;
   learned committees (:mod:`learned_cases`, the gate in torch ops captured into the stage graphs)
   against ``run_learned_cascade``.
2. The example bundle on its full test split (``EC_EXAMPLE_BUNDLE``, default ``out/fashion_mnist``;
   images from ``EC_FMNIST_DIR``, default the Debian package's folder): host loop and graph mode give
   the labels, exit stages and flags of the NumPy reference gate applied to the same members' logits,
   except samples whose confidence lies within ``GAP`` of a threshold (counted; at most 0.1%); and
   agree with the CPU product path (ONNX Runtime + NumPy gate) except samples within 1e-4 of a
   threshold. FP16 members: max |logit - FP32 logit| <= 0.25, labels agree with FP32 on >= 99% of
   the images and accuracy within 0.5 percentage points.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from device_cases import ID_PREPROCESSING, TableMember, assert_matches_reference, id_images, make_case
from gate_cases import GAP

from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS, GateState, gate_step

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU visible to PyTorch", allow_module_level=True)

from edge_committee.backend.device import DeviceCascade  # noqa: E402
from edge_committee.backend.device.gate import fix_survivors_torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = Path(os.environ.get("EC_EXAMPLE_BUNDLE", ROOT / "out" / "fashion_mnist"))
FMNIST = Path(os.environ.get("EC_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
#: samples within this distance of a threshold may exit elsewhere on another implementation
BORDER_ORT = 1e-4
FP16_LOGIT_ATOL, FP16_AGREEMENT, FP16_ACCURACY = 0.25, 0.99, 0.005


def gate_impls() -> list[str]:
    from edge_committee import gate

    return ["cuda", "torch"] if gate.cuda_available() else ["torch"]


def table_runtime(tables, thresholds, kind, **options) -> DeviceCascade:
    members = [TableMember(f"m{k}", t) for k, t in enumerate(tables)]
    return DeviceCascade(members, [ID_PREPROCESSING] * len(members), thresholds, kind,
                         [f"c{i}" for i in range(tables[0].shape[1])], device=0, **options)


# ---------------------------------------------------------------------------------------------- 1
@pytest.mark.parametrize("mode", ["graph", "host"])
@pytest.mark.parametrize("gate_impl", gate_impls())
@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
def test_table_cascades(mode, gate_impl, kind, caplog):
    caplog.set_level(logging.INFO, logger="edge_committee")
    with table_runtime(*make_case(0, 1, 6, 4, kind)[:2], kind, mode=mode, max_batch=16,
                       gate_impl=gate_impl) as runtime:
        assert runtime.mode == mode, runtime.mode_reason  # graph mode must be available on this GPU
        assert f"{mode} mode" in caplog.text
        if gate_impl == "cuda":
            assert runtime.gate_name.startswith("CUDA kernel")
    for n in (0, 1, 2, 7, 16, 37):  # empty, batch 1, odd, a full bucket, over max_batch (3 chunks)
        tables, thresholds, ref = make_case(seed=n, n=n, c=6, k=4, kind=kind)
        with table_runtime(tables, thresholds, kind, mode=mode, max_batch=16, gate_impl=gate_impl) as runtime:
            pred = runtime.run(id_images(n))
            again = runtime.run(id_images(n))  # replays reuse the captured graphs
            assert runtime.mode == mode
        assert_matches_reference(pred, ref, f"{mode} {gate_impl} n={n} {kind}")
        assert_matches_reference(again, ref, f"{mode} {gate_impl} n={n} {kind} (replay)")


@pytest.mark.parametrize("switch", ["1", "0"])
@pytest.mark.parametrize("setter", ["fused", "node"])
def test_graph_paths_per_stage_buckets(setter, switch, monkeypatch):
    """Graph mode's paths (issue 22): SWITCH graphs where the driver has them (every batch), else IF graphs up
    to IF_GRAPH_MAX_BUCKET and the host loop above; the setter fused into the fix-up kernel or as its own node.
    Each equals the reference at batch 1, 5, 8, 9, 33, 64, with replays."""
    from edge_committee.backend.device.buckets import IF_GRAPH_MAX_BUCKET
    from edge_committee.backend.device.graph import switch_available

    monkeypatch.setenv("EC_GRAPH_SETTER", setter)
    monkeypatch.setenv("EC_GRAPH_SWITCH", switch)  # "0": IF nodes only, as on a 12.4..12.7 driver
    for n in (1, 5, 8, 9, 33, 64):
        tables, thresholds, ref = make_case(seed=n + 100, n=n, c=6, k=4, kind="max_prob")
        with table_runtime(tables, thresholds, "max_prob", mode="graph", max_batch=64) as runtime:
            for _ in range(2):
                assert_matches_reference(runtime.run(id_images(n)), ref, f"graph {setter} n={n}")
            want = "switch" if switch_available() and switch == "1" else ("if" if n <= IF_GRAPH_MAX_BUCKET else "host")
            assert runtime.mode == "graph" and runtime.last_path == want, (runtime.last_path, runtime.mode_reason)


@pytest.mark.parametrize("fused_gate", ["1", "0"])
def test_switch_and_host_batches_interleave(fused_gate, monkeypatch):
    """Graph batches (fused setter) and host-loop batches on the same buffers: the slots never leak a handle;
    with the fix-up in the gate kernel (GateFix) and as its own kernel (EC_FUSED_GATE=0)."""
    monkeypatch.setenv("EC_FUSED_GATE", fused_gate)
    tables, thresholds, ref = make_case(seed=7, n=64, c=6, k=3, kind="margin")
    with table_runtime(tables, thresholds, "margin", mode="graph", max_batch=64) as runtime:
        for n in (64, 3, 64, 12, 1, 64):
            pred = runtime.run(id_images(64)[:n])
            assert np.array_equal(pred.exit_stage, ref.exit_stage[:n]) and np.array_equal(pred.flags, ref.flag[:n]), n


@pytest.mark.parametrize("mode", ["graph", "host"])
def test_nobody_and_everybody_exits(mode):
    """IF nodes closed after stage 0 (all exit) and all open (nobody exits early)."""
    n, c = 13, 5
    from gate_cases import make_logits

    tables = make_logits(3, n, c, 3, "float32", 0.0, 4.0)
    for t, stages in ((2.0, {2}), (-1.0, {0})):
        with table_runtime(tables, [t, t], "max_prob", mode=mode, max_batch=8) as runtime:
            for batch in (1, 5, 13):
                pred = runtime.run(id_images(batch))
                assert set(pred.exit_stage.tolist()) == stages, (t, batch)


@pytest.mark.parametrize("mode", ["graph", "host"])
def test_cuda_tensor_in_cuda_tensor_out(mode):
    tables, thresholds, ref = make_case(seed=4, n=21, c=7, k=3, kind="max_prob")
    with table_runtime(tables, thresholds, "max_prob", mode=mode, max_batch=8) as runtime:
        pred = runtime.run(torch.from_numpy(id_images(21)).cuda())
    assert pred.labels.is_cuda and pred.probs.is_cuda
    for name in ("labels", "probs", "confidence", "exit_stage", "flags"):
        setattr(pred, name, getattr(pred, name).cpu().numpy())
    assert_matches_reference(pred, ref, f"{mode} CUDA tensors")


@pytest.mark.parametrize("mode", ["graph", "host"])
@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
def test_learned_table_cascades(mode, kind):
    """A learned committee: its gate (torch ops) captured into every stage graph = ``run_learned_cascade``.

    NaN/Inf rows, batch 0/1/odd/a full bucket/over max_batch, exits at every stage, replays, CUDA
    tensors in and out.
    """
    from learned_cases import assert_matches_learned, make_learned_case, reference

    for n in (0, 1, 2, 7, 16, 37):
        tables, thresholds, combiners = make_learned_case(seed=n, n=n, c=6, k=4, kind=kind)
        ref = reference(tables, thresholds, combiners, kind)
        with table_runtime(tables, thresholds, kind, mode=mode, max_batch=16, combiners=combiners) as runtime:
            assert runtime.gate_name == "learned combiner (torch ops)"
            pred = runtime.run(id_images(n))
            again = runtime.run(id_images(n))
            on_device = runtime.run(torch.from_numpy(id_images(n)).cuda())
            assert runtime.mode == mode, runtime.mode_reason  # graph mode must survive the learned gate
            for ctx in runtime._contexts.values():  # every stage was captured, none runs eagerly
                assert all(seg.graph is not None for seg in ctx._stages.values()), \
                    [seg.capture_error for seg in ctx._stages.values()]
        assert_matches_learned(pred, ref, f"{mode} learned n={n} {kind}")
        assert_matches_learned(again, ref, f"{mode} learned n={n} {kind} (replay)")
        assert on_device.probs.is_cuda
        for name in ("labels", "probs", "confidence", "exit_stage", "flags"):
            setattr(on_device, name, getattr(on_device, name).cpu().numpy())
        assert_matches_learned(on_device, ref, f"{mode} learned n={n} {kind} (CUDA tensors)")


def test_fix_kernel_matches_torch():
    from edge_committee.backend.device.kernels import kernels_for

    kernels = kernels_for(0, torch.cuda.get_device_capability(0))
    rng = np.random.default_rng(0)
    cap = 512
    pos = torch.arange(cap, dtype=torch.int32, device="cuda")
    for b in (1, 7, 256, 512):
        src = torch.from_numpy(rng.integers(0, 2 * cap, cap).astype(np.int32)).cuda()
        count = torch.tensor([int(rng.integers(0, b + 1))], dtype=torch.int32, device="cuda")
        outs = []
        for use_kernel in (True, False):
            act, gidx = torch.full((cap,), -5, dtype=torch.int32, device="cuda"), torch.full_like(pos, -5)
            real = torch.zeros(1, dtype=torch.int32, device="cuda")
            if use_kernel:
                kernels.fix_survivors(src, count, b, cap, act, gidx, real)
            else:
                fix_survivors_torch(src, count, b, cap, act, gidx, real, pos)
            torch.cuda.synchronize()
            outs.append((act.cpu().numpy(), gidx.cpu().numpy(), int(real.item())))
        assert all(np.array_equal(a, b_) for a, b_ in zip(outs[0][:2], outs[1][:2])) and outs[0][2] == outs[1][2]


# ---------------------------------------------------------------------------------------------- 2
@pytest.fixture(scope="module")
def example():
    """(bundle path, test images, test labels); skips when the bundle or the data is missing."""
    if not (BUNDLE / "manifest.json").is_file():
        pytest.skip(f"no example bundle at {BUNDLE} (set EC_EXAMPLE_BUNDLE)")
    images_path = FMNIST / "t10k-images-idx3-ubyte.gz"
    if not images_path.is_file():
        pytest.skip(f"no Fashion-MNIST test split in {FMNIST} (set EC_FMNIST_DIR)")
    if not _onnx2torch_present():
        pytest.skip("needs onnx2torch")
    from edge_committee.data.readers import read_idx

    return BUNDLE, read_idx(images_path)[..., None], read_idx(FMNIST / "t10k-labels-idx1-ubyte.gz")


def _onnx2torch_present() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnx2torch") is not None


def member_logits(bundle: Path, images: np.ndarray, precision: str) -> list[np.ndarray]:
    """Each cascade member's logits on all images: the same preprocessing and member, no graphs."""
    import edge_committee as ec
    from edge_committee.preprocess.torch_exec import TorchPlan
    from edge_committee.backend.torch_cuda import TorchMember

    model = ec.load(bundle)
    out = []
    for name, pp in zip(model.members, model.preprocessing):
        member = TorchMember(model.member_path(name), name=name, precision=precision)
        member.activate(0)
        plan = TorchPlan(pp.plan(images.shape[1:3], images.shape[3]), "cuda", getattr(torch, member.input_dtype))
        rows = []
        for s in range(0, len(images), 500):
            x = torch.from_numpy(images[s:s + 500]).cuda()
            logits = torch.empty(len(x), member.num_classes, device="cuda")
            member.enqueue(plan(x), logits, None)
            rows.append(logits.cpu().numpy())
        out.append(np.concatenate(rows))
    return out


def reference(logits: list[np.ndarray], thresholds: list[float], kind: str) -> tuple[GateState, np.ndarray]:
    """The NumPy reference cascade, and each sample's smallest |confidence - threshold| at the stages it ran."""
    from gate_cases import stage_confidences

    n, c = logits[0].shape
    k_total = len(logits)
    state, margin = GateState.start(n, c), np.full(n, np.inf)
    for k, x in enumerate(logits):
        if state.active.size == 0:
            break
        xa = x[state.active]
        if k < k_total - 1:
            conf = stage_confidences(state, xa, k, kind)
            margin[state.active] = np.minimum(margin[state.active], np.abs(conf - thresholds[k]))
        gate_step(state, xa, k, k_total, thresholds[k] if k < k_total - 1 else np.inf, kind)
    return state, margin


def predict(bundle: Path, images: np.ndarray, batch: int, **options):
    import edge_committee as ec

    with ec.load(bundle, backend="torch-cuda", **options) as model:
        parts = [model.predict(images[s:s + batch]) for s in range(0, len(images), batch)]
        mode = model.executor.mode
    return {k: np.concatenate([getattr(p, k) for p in parts]) for k in ("labels", "exit_stage", "flags", "probs")}, mode


@pytest.mark.parametrize("mode,batch", [("graph", 256), ("host", 256), ("graph", 1), ("host", 7)])
def test_example_full_test_split(example, mode, batch):
    bundle, images, labels = example
    if batch == 1:
        images = images[:500]  # one launch per image: 500 are plenty at batch 1
    import edge_committee as ec

    model = ec.load(bundle)
    ref, margin = reference(member_logits(bundle, images, "fp32"), model.thresholds, model.confidence)
    got, ran = predict(bundle, images, batch, mode=mode)
    assert ran == mode
    safe = margin > GAP
    assert (~safe).mean() <= 1e-3, f"{(~safe).sum()} samples within {GAP} of a threshold"
    for key, want in (("exit_stage", ref.exit_stage), ("flags", ref.flag), ("labels", ref.label)):
        assert np.array_equal(got[key][safe], want[safe]), f"{mode}: {key} differ on {(got[key] != want)[safe].sum()}"
    print(f"{mode} batch {batch}: {len(images)} images, {(~safe).sum()} near a threshold, "
          f"accuracy {np.mean(got['labels'] == labels[:len(images)]):.4f}")


def test_example_agrees_with_the_cpu_path(example):
    bundle, images, _ = example
    import edge_committee as ec

    with ec.load(bundle, gate="numpy") as cpu:
        want = cpu.predict(images)
    model = ec.load(bundle)
    _, margin = reference(member_logits(bundle, images, "fp32"), model.thresholds, model.confidence)
    got, _ = predict(bundle, images, 256, mode="graph")
    differ = (got["exit_stage"] != want.exit_stage) | (got["labels"] != want.labels)
    far = differ & (margin >= BORDER_ORT)
    assert not far.any(), f"{differ.sum()} differ, {far.sum()} of them not near a threshold"
    assert differ.mean() <= 1e-3


def test_example_fp16_within_tolerance_of_fp32(example):
    bundle, images, labels = example
    l32, l16 = member_logits(bundle, images, "fp32"), member_logits(bundle, images, "fp16")
    for a, b in zip(l32, l16):
        assert np.abs(a - b).max() <= FP16_LOGIT_ATOL
    p32, _ = predict(bundle, images, 256, mode="graph")
    p16, _ = predict(bundle, images, 256, mode="graph", precision="fp16")
    assert np.mean(p16["labels"] == p32["labels"]) >= FP16_AGREEMENT
    assert abs(np.mean(p16["labels"] == labels) - np.mean(p32["labels"] == labels)) <= FP16_ACCURACY
