"""A learned committee as one fused ONNX file (both forms) against the NumPy reference of the learned combination.

Bundles are written directly (members built in code, random stage combiners stored as the bundle's
``combiner/stage<k>.onnx``) so that NaN/Inf logits and exits at every stage are certain; one test
goes through the whole pipeline (build -> select a learned committee -> predict on every CPU runtime).
The reference is :func:`edge_committee.cascade.learned.run_learned_cascade` over the members' logits
(ONNX Runtime on the members' own files). Labels, exit stages and flags must be equal, except for
samples whose confidence at a stage they reached lies within ``NEAR`` of that stage's threshold
(counted; thresholds are placed away from every confidence, so there are none here).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import edge_committee as ec  # noqa: E402
from edge_committee.bundle import read_manifest  # noqa: E402
from edge_committee.bundle.bundle import SCHEMA_VERSION, finalize_manifest  # noqa: E402
from edge_committee.cascade.learned import (  # noqa: E402
    FORM,
    Combiner,
    LearnedGateState,
    learned_gate_step,
    run_learned_cascade,
)
from edge_committee.cascade.learned_onnx import combiner_from_onnx, save_combiner  # noqa: E402
from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS, confidence  # noqa: E402
from edge_committee.errors import EdgeCommitteeError  # noqa: E402
from edge_committee.export.cascade_onnx import FusedExportError  # noqa: E402
from edge_committee.select.objective import ALWAYS_EXIT, NEVER_EXIT  # noqa: E402

from ..conftest import LABELS, linear_member, make_images  # noqa: E402
from .test_cascade_onnx import executed_nodes, fused, member_logits, nan_member, run  # noqa: E402

NEAR = 1e-5
PPS = [{"size": [6, 6], "color": "gray", "mean": [0.5], "std": [0.25]},
       {"size": [8, 8], "color": "rgb", "scale": 0.0078125, "offset": -1.0, "layout": "NHWC", "channel_order": "BGR"},
       {"size": [12, 12], "color": "rgb", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}]


# ---------------------------------------------------------------------------------------------- bundles
def random_combiners(seed: int, k: int, c: int) -> list[Combiner]:
    """Stage ``j``'s combiner over ``j + 1`` members (weights in [0.2, 1.2], bias ~ N(0, 0.5))."""
    rng = np.random.default_rng(seed)
    return [Combiner(rng.uniform(0.2, 1.2, (j + 1, c)), rng.normal(0.0, 0.5, c)) for j in range(k)]


def stage_thresholds(logits, combiners, kind: str, quantiles=(0.4, 0.7)) -> list[float]:
    """Per stage, the midpoint of the widest gap between confidences near the quantile (never at one)."""
    n, c = logits[0].shape
    state, k_total, out = LearnedGateState.start(n, c), len(logits), []
    for k in range(k_total - 1):
        idx = state.active
        trial = copy.deepcopy(state)  # the confidences this stage will see, without deciding
        learned_gate_step(trial, logits[k][idx], k, k_total, np.inf, kind, combiners[k])
        finite = confidence(trial.prob_sum[idx], kind)[np.isfinite(logits[k][idx]).all(1)]
        values = np.unique(finite)
        if values.size < 2:
            t = 0.5
        else:
            target = np.quantile(finite, quantiles[k % len(quantiles)])
            i = int(np.clip(np.searchsorted(values, target), 1, values.size - 1))
            lo = max(range(max(1, i - 3), min(values.size, i + 4)), key=lambda j: values[j] - values[j - 1])
            t = float((values[lo - 1] + values[lo]) / 2)
        out.append(t)
        learned_gate_step(state, logits[k][idx], k, k_total, t, kind, combiners[k])
    return out


def learned_bundle(root, members, images, kind="max_prob", thresholds=None, seed=0):
    """A bundle of ``(name, preprocessing, writer)`` members whose chosen committee is all of them, learned."""
    (root / "members").mkdir(parents=True, exist_ok=True)
    paths = [writer(root / "members" / f"{name}.onnx") for name, _, writer in members]
    pps = [pp for _, pp, _ in members]
    logits = member_logits(paths, pps, images)
    combiners = random_combiners(seed, len(members), len(LABELS))
    if thresholds is None:
        thresholds = stage_thresholds(logits, combiners, kind)
    files = []
    for k, comb in enumerate(combiners):
        (root / "combiner").mkdir(exist_ok=True)
        save_combiner(comb, root / f"combiner/stage{k}.onnx")
        files.append(f"combiner/stage{k}.onnx")
    manifest = {
        "schema_version": SCHEMA_VERSION, "name": root.name, "labels": LABELS,
        "members": [{"name": n, "file": f"members/{n}.onnx", "sha256": "", "macs": 1 + i, "preprocessing": pp,
                     "labels": LABELS, "precision": "fp32"} for i, (n, pp, _) in enumerate(members)],
        "cascade": {"kind": "learned_cascade", "members": [n for n, _, _ in members], "thresholds": list(thresholds),
                    "confidence": kind, "combiner": {"form": FORM, "files": files}},
        "files": {},
    }
    finalize_manifest(root, manifest)
    return root


def soft_nan_member(path, pp: dict, pixel: int, seed: int):
    """:func:`nan_member` with its linear logits scaled down 500x: on raw pixels they would saturate
    every softmax (confidence exactly 1), leaving no sample for a threshold to keep."""
    nan_member(path, pp, pixel, seed)
    model = onnx.load(str(path))
    for t in model.graph.initializer:
        if t.name == "W":
            t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t) / np.float32(500), "W"))
    onnx.save(model, str(path))
    return path


def linear_members(noise: float = 0.7):
    return [(f"m{i}", pp, lambda p, pp=pp, i=i: linear_member(p, pp, noise, seed=i)) for i, pp in enumerate(PPS)]


def reference_of(bundle, images):
    """(run_learned_cascade of the bundle's committee on these images, near-threshold mask)."""
    m = read_manifest(bundle)
    c = m["cascade"]
    by_name = {e["name"]: e for e in m["members"]}
    logits = member_logits([bundle / by_name[n]["file"] for n in c["members"]],
                           [by_name[n]["preprocessing"] for n in c["members"]], images)
    combiners = [combiner_from_onnx(bundle / f) for f in c["combiner"]["files"]]
    ref = run_learned_cascade(logits, c["thresholds"], combiners, c["confidence"])
    # samples whose confidence at a stage they reached is within NEAR of its threshold
    n, k_total = len(images), len(logits)
    state, near = LearnedGateState.start(n, len(LABELS)), np.zeros(n, bool)
    for k in range(k_total):
        idx = state.active
        t = c["thresholds"][k] if k < k_total - 1 else np.inf
        learned_gate_step(state, logits[k][idx], k, k_total, t, c["confidence"], combiners[k])
        near[idx] |= np.abs(confidence(state.prob_sum[idx], c["confidence"]).astype(np.float64) - t) < NEAR
    return ref, near


def assert_equals_reference(out: dict, ref, near: np.ndarray, what: str, atol: float = 1e-5) -> None:
    differ = (out["labels"] != ref.label) | (out["exit_stage"] != ref.exit_stage) | (out["flags"] != ref.flag)
    assert not (differ & ~near).any(), f"{what}: {int((differ & ~near).sum())} samples differ"
    assert near.sum() <= len(near) // 100, f"{what}: {int(near.sum())} samples near a threshold"
    agree = ~differ
    np.testing.assert_array_equal(np.isnan(out["confidence"]), np.isnan(ref.confidence), err_msg=what)
    np.testing.assert_allclose(out["confidence"][agree], ref.confidence[agree], atol=atol, err_msg=what)
    np.testing.assert_allclose(out["probs"][agree], ref.probs[agree], atol=atol, err_msg=what)


# ---------------------------------------------------------------------------------------------- equality
@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
def test_fused_file_equals_the_learned_reference(tmp_path, kind):
    """Both forms, three members (gray/rgb, NCHW/NHWC, BGR), exits at every stage; also = the host loop."""
    x, _ = make_images(160, 11)
    bundle = learned_bundle(tmp_path / kind, linear_members(), x, kind=kind, seed=3)
    ref, near = reference_of(bundle, x)
    assert set(ref.exit_stage.tolist()) == {0, 1, 2}, "the committee should exit at every stage"
    with ec.load(bundle, threads=1) as model:  # the host loop runs the same learned gate
        host = model.predict(x)
    np.testing.assert_array_equal(host.exit_stage, ref.exit_stage)
    for form in ("compact", "mask"):
        sess, model = fused(bundle, form, "12x12x3")
        out = run(sess, x)
        assert_equals_reference(out, ref, near, f"{kind} {form}")
        np.testing.assert_allclose(out["probs"], host.probs, atol=1e-5)
        assert "LogSoftmax" in _ops(model)  # the stage's learned combination, not the plain average


def _ops(model) -> set[str]:
    from edge_committee.export.cascade_onnx._graph import walk_nodes

    return {n.op_type for n, _ in walk_nodes(model.graph)}


def test_nonfinite_logits_give_the_reference_labels_and_flags(tmp_path):
    """NaN and -inf logits at every stage (pixel-controlled): flags, label -1, no early exit when flagged."""
    raw = {"size": [12, 12], "color": "gray", "scale": 1.0, "offset": 0.0}
    members = [(f"nan{i}", raw, lambda p, i=i, px=px: soft_nan_member(p, raw, px, seed=i + 1))
               for i, px in enumerate((0, 143, 70))]
    rng = np.random.default_rng(0)
    n = 300
    x = rng.integers(0, 256, (n, 12, 12, 1), dtype=np.uint8)
    for pixel, p_finite in ((0, 0.8), (143, 0.4), (70, 0.4)):  # NaN (< 100), -inf (== 100) or finite
        bad = (1 - p_finite) / 2
        x.reshape(n, -1)[:, pixel] = rng.choice([50, 100, 180, 220], n, p=[bad, bad, p_finite / 2, p_finite / 2])
    bundle = learned_bundle(tmp_path / "nan", members, x, seed=5)
    ref, near = reference_of(bundle, x)
    assert ref.flag.sum() > 20 and (ref.label == -1).sum() > 0 and (ref.exit_stage == 0).sum() > 0
    # the cases that need the count of contributing stages: a finite early stage, a non-finite exit stage
    finite = np.stack([(x.reshape(n, -1)[:, px] > 100) for px in (0, 143, 70)])  # (stage, sample)
    at_exit = finite[ref.exit_stage, np.arange(n)]
    assert ((ref.label >= 0) & ~at_exit).sum() > 5 and ((ref.label == -1) & (ref.exit_stage == 2)).sum() > 5
    with ec.load(bundle, threads=1) as model:
        host = model.predict(x)
    np.testing.assert_array_equal(host.labels, ref.label)
    for form in ("compact", "mask"):
        out = run(fused(bundle, form, "12x12x1")[0], x)
        assert_equals_reference(out, ref, near, f"non-finite {form}")
        np.testing.assert_array_equal(out["labels"], ref.label)
        np.testing.assert_array_equal(out["flags"], ref.flag)
        assert not out["probs"][ref.label == -1].any()


@pytest.mark.parametrize("form", ["compact", "mask"])
def test_empty_batch_and_batch_of_one(tmp_path, form):
    x, _ = make_images(40, 12)
    bundle = learned_bundle(tmp_path / "b", linear_members(), x, seed=1)
    ref, _ = reference_of(bundle, x[:1])
    sess, _ = fused(bundle, form, "12x12x3")
    out = run(sess, x[:0])
    assert out["labels"].shape == out["confidence"].shape == out["exit_stage"].shape == out["flags"].shape == (0,)
    assert out["probs"].shape == (0, 4)
    one = run(sess, x[:1])
    assert one["labels"].tolist() == ref.label.tolist() and one["exit_stage"].tolist() == ref.exit_stage.tolist()
    with ec.load(bundle, backend="onnxrt-fused", form=form) as model:
        assert model.predict(x[:0]).probs.shape == (0, 4)
        assert model.predict([]).labels.shape == (0,)


@pytest.mark.parametrize("form", ["compact", "mask"])
def test_untaken_branch_does_not_run(tmp_path, form):
    x, _ = make_images(8, 8)
    for threshold, later_runs in ((ALWAYS_EXIT, False), (NEVER_EXIT, True)):
        members = linear_members()[:2]
        bundle = learned_bundle(tmp_path / str(later_runs), members, x, thresholds=[threshold], seed=2)
        _, model = fused(bundle, form, "12x12x3")
        nodes = executed_nodes(model, x, tmp_path)
        stage0 = [op for n, op in nodes if n.startswith("s0/")]
        stage1 = [(n, op) for n, op in nodes if n.startswith("s1/")]
        assert "Gemm" in stage0 and "LogSoftmax" in stage0, "member 0 and its learned gate must run"
        if later_runs:  # the control: the profiler does see member 1 and its combination
            assert {"Gemm", "LogSoftmax", "Softmax"} <= {op for _, op in stage1}
        else:
            assert stage1 == [], f"nodes of stage 1 ran although every sample exited at stage 0: {stage1[:5]}"


# ---------------------------------------------------------------------------------------------- TensorRT, the file
def test_plugin_form_is_refused_and_the_mask_form_is_tensorrt_parsable(tmp_path, capsys):
    from edge_committee.cli.main import main

    from .test_cascade_onnx_trt import violations

    x, _ = make_images(32, 13)
    bundle = learned_bundle(tmp_path / "trt", linear_members(), x, seed=4)
    out = tmp_path / "trt.onnx"
    base = ["export-onnx", str(bundle), "--out", str(out), "--source-size", "12x12", "--preprocess", "float32"]
    assert main(base + ["--gate", "plugin"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CascadeGate plugin averages" in err and "--form mask" in err, err
    assert not out.exists()
    from edge_committee.backend.tensorrt.compiler import compile_bundle
    from edge_committee.errors import BundleError

    with pytest.raises(BundleError, match="drop --whole"):  # before TensorRT is even looked for
        compile_bundle(bundle, whole=True)
    assert main(base + ["--form", "mask"]) == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert violations(model) == []
    assert "LogSoftmax" in _ops(model) and "CascadeGate" not in _ops(model)


def test_export_records_the_combiner_and_the_backend_checks_it(tmp_path):
    """The file's metadata names the stage files; a file of the plain average is never run for a learned bundle."""
    from edge_committee.export.cascade_onnx import CascadeDef, read_metadata
    from edge_committee.export.cascade_onnx.export import export_cascade_onnx

    x, _ = make_images(48, 14)
    bundle = learned_bundle(tmp_path / "meta", linear_members(), x, seed=6)
    m = read_manifest(bundle)
    path, inside = export_cascade_onnx(bundle, tmp_path / "c.onnx", into_bundle=True, source_size="12x12x3")
    meta = read_metadata(onnx.load(str(path)))
    assert meta["cascade"]["combiner"] == FORM and meta["cascade"]["kind"] == "learned_cascade"
    assert meta["combiner"] == [{"file": f, "sha256": m["files"][f]} for f in m["cascade"]["combiner"]["files"]]
    ref, _ = reference_of(bundle, x)
    with ec.load(bundle, backend="onnxrt-fused") as model:  # the listed file is used
        got = model.predict(x)
        assert model.executor.origins[(12, 12, 3)] == str(inside)
    np.testing.assert_array_equal(got.exit_stage, ref.exit_stage)
    c = m["cascade"]
    plain = export_cascade_onnx(bundle, tmp_path / "plain.onnx", source_size="12x12x3",
                                cascade=CascadeDef(c["members"], c["thresholds"], c["confidence"]))[0]
    with pytest.raises(EdgeCommitteeError, match="it averages, the bundle's committee has a learned combiner"):
        ec.load(bundle, backend="onnxrt-fused", path=plain).__enter__()
    with pytest.raises(FusedExportError, match="one combiner per stage"):
        from edge_committee.export.cascade_onnx.learned_gate import check_learned

        check_learned(random_combiners(0, 2, 4), 3, 4, "standard")


# ---------------------------------------------------------------------------------------------- the pipeline
def test_built_learned_bundle_predicts_the_reference_on_every_cpu_runtime(built_learned_bundle):
    """build -> select (learned) -> onnxrt (host loop) and onnxrt-fused (both forms) = the NumPy reference."""
    bundle = built_learned_bundle
    c = read_manifest(bundle)["cascade"]
    assert c["kind"] in ("learned_cascade", "learned_ensemble") and len(c["members"]) >= 2
    combiners = [combiner_from_onnx(bundle / f) for f in c["combiner"]["files"]]
    with np.load(bundle / "outputs.npz") as z:
        logits = [z[f"{n}/test"] for n in c["members"]]
    want = run_learned_cascade(logits, c["thresholds"], combiners, c["confidence"])
    assert set(want.exit_stage.tolist()) == set(range(len(c["members"])))
    images = np.load(bundle.parent / "test.npz")["x"]
    for backend, options in (("onnxrt", {}), ("onnxrt-fused", {"form": "compact"}),
                             ("onnxrt-fused", {"form": "mask"})):
        with ec.load(bundle, backend=backend, threads=1, **options) as model:
            got = model.predict(images)
        what = f"{backend} {options}"
        np.testing.assert_array_equal(got.exit_stage, want.exit_stage, err_msg=what)
        np.testing.assert_array_equal(got.labels, want.label, err_msg=what)
        np.testing.assert_array_equal(got.flags, want.flag, err_msg=what)
        np.testing.assert_allclose(got.probs, want.probs, atol=1e-6, err_msg=what)
        np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-6, err_msg=what)
