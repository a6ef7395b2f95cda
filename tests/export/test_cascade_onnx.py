"""The fused cascade file against the Python runtime (``edge_committee.load(bundle).predict``).

Bundles are written directly (members built in code, a manifest with a chosen cascade), so every
preprocessing combination and precision gets its own small committee in well under a second.
Predictions must match exactly (labels, exit stages, flags), except for samples whose confidence
at a stage they reached lies within 1e-5 of that stage's threshold; those are counted and printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edge_committee.bundle import read_manifest  # noqa: E402
from edge_committee.bundle.bundle import SCHEMA_VERSION, finalize_manifest  # noqa: E402
from edge_committee.cascade.reference import GateState, confidence, finite_rows, gate_step, softmax  # noqa: E402
from edge_committee.runtime import CascadeModel  # noqa: E402
from edge_committee.select.objective import ALWAYS_EXIT, NEVER_EXIT  # noqa: E402
from edge_committee.spec.preprocess import Preprocessing  # noqa: E402

from ..conftest import LABELS, linear_member, make_images  # noqa: E402
from tests.preprocess.test_onnx_ops import all_preprocessings  # noqa: E402

NEAR = 1e-5
SIZES = ((6, 6), (8, 5), (9, 12), (12, 12), (10, 7))


# ---------------------------------------------------------------------------------------------- members
def _save(path: Path, nodes: list, inputs: list, inits: list, classes: int = 4) -> Path:
    graph = onnx.helper.make_graph(nodes, "member", inputs,
                                   [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT,
                                                                       ["batch", classes])], inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def cnn_member(path: Path, pp: dict, seed: int) -> Path:
    """Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm, random weights (NCHW or NHWC input)."""
    p = Preprocessing.from_dict(pp)
    rng = np.random.default_rng(seed)
    num = onnx.numpy_helper.from_array
    nodes = []
    x = "input"
    if p.layout == "NHWC":
        nodes.append(onnx.helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    nodes += [onnx.helper.make_node("Conv", [x, "cw", "cb"], ["c"], pads=[1, 1, 1, 1]),
              onnx.helper.make_node("Relu", ["c"], ["r"]),
              onnx.helper.make_node("GlobalAveragePool", ["r"], ["g"]),
              onnx.helper.make_node("Flatten", ["g"], ["f"]),
              onnx.helper.make_node("Gemm", ["f", "w", "b"], ["logits"], transB=1)]
    inits = [num(rng.normal(0, 0.5, (8, p.channels, 3, 3)).astype(np.float32), "cw"),
             num(rng.normal(0, 0.1, 8).astype(np.float32), "cb"),
             num(rng.normal(0, 1.0, (4, 8)).astype(np.float32), "w"), num(np.zeros(4, np.float32), "b")]
    x_in = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", *p.input_shape(1)[1:]])
    return _save(path, nodes, [x_in], inits)


def nan_member(path: Path, pp: dict, pixel: int, seed: int) -> Path:
    """Linear logits + log(x[pixel] - 100): NaN below 100, -inf at 100 (raw pixels: scale 1, offset 0)."""
    linear_member(path, pp, 0.2, seed)
    model = onnx.load(str(path))
    g = model.graph
    g.output[0].name = "linear"
    g.node[-1].output[0] = "linear"
    c = onnx.helper.make_tensor
    i64 = onnx.TensorProto.INT64
    g.initializer.extend([c("start", i64, [1], [pixel]), c("end", i64, [1], [pixel + 1]), c("ax", i64, [1], [1]),
                          c("hundred", onnx.TensorProto.FLOAT, [], [100.0])])
    g.node.extend([onnx.helper.make_node("Slice", ["flat", "start", "end", "ax"], ["px"]),
                   onnx.helper.make_node("Sub", ["px", "hundred"], ["shifted"]),
                   onnx.helper.make_node("Log", ["shifted"], ["lg"]),
                   onnx.helper.make_node("Add", ["linear", "lg"], ["logits"])])
    g.output[0].name = "logits"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------------------------------- bundles
def member_logits(paths: list[Path], pps: list[dict], images: np.ndarray) -> list[np.ndarray]:
    out = []
    for path, pp in zip(paths, pps):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = Preprocessing.from_dict(pp)(images)
        x = x.astype(np.float16) if sess.get_inputs()[0].type == "tensor(float16)" else x
        out.append(sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32))
    return out


def auto_thresholds(logits: list[np.ndarray], quantile: float = 0.5, kind: str = "max_prob") -> list[float]:
    """Thresholds at the ``quantile`` of the confidences of the samples reaching each stage."""
    state, k_total, out = GateState.start(*logits[0].shape), len(logits), []
    for k, lg in enumerate(logits[:-1]):
        idx, ok = state.active, finite_rows(lg[state.active])
        rows = state.prob_sum[idx] + np.where(ok[:, None], softmax(np.where(ok[:, None], lg[idx], 0)), 0)
        t = float(np.quantile(confidence(rows / np.float32(k + 1), kind), quantile)) if idx.size else 0.5
        out.append(t)
        gate_step(state, lg[idx], k, k_total, t, kind)
    return out


def write_bundle(root: Path, members: list[tuple[str, dict, object]], images: np.ndarray, thresholds=None,
                 kind: str = "cascade", confidence_kind: str = "max_prob") -> Path:
    """A bundle of ``(name, preprocessing, writer(path))`` members whose chosen committee is all of them."""
    (root / "members").mkdir(parents=True, exist_ok=True)
    paths = [writer(root / "members" / f"{name}.onnx") for name, _, writer in members]
    pps = [pp for _, pp, _ in members]
    if thresholds is None:
        thresholds = auto_thresholds(member_logits(paths, pps, images), kind=confidence_kind)
    manifest = {
        "schema_version": SCHEMA_VERSION, "name": root.name, "labels": LABELS,
        "members": [{"name": n, "file": f"members/{n}.onnx", "sha256": "", "macs": 1 + i, "preprocessing": pp,
                     "labels": LABELS, "precision": "fp32"} for i, (n, pp, _) in enumerate(members)],
        "cascade": {"kind": kind, "members": [n for n, _, _ in members], "thresholds": list(thresholds),
                    "confidence": confidence_kind},
        "files": {},
    }
    finalize_manifest(root, manifest)
    return root


def near_threshold(model: CascadeModel, images: np.ndarray) -> np.ndarray:
    """Samples whose confidence at a stage they reached is within NEAR of that stage's threshold."""
    paths = [model.member_path(n) for n in model.members]
    logits = member_logits(paths, [model.by_name[n]["preprocessing"] for n in model.members], images)
    state, k_total = GateState.start(*logits[0].shape), len(logits)
    near = np.zeros(len(images), bool)
    for k, lg in enumerate(logits):
        idx = state.active
        t = model.thresholds[k] if k < k_total - 1 else np.inf
        gate_step(state, lg[idx], k, k_total, t, model.confidence)
        conf = confidence(state.prob_sum[idx] / np.float32(k + 1), model.confidence)
        near[idx] |= np.abs(conf.astype(np.float64) - t) < NEAR
    return near


def fused(bundle: Path, form: str = "compact", source=None, **kw):
    from edge_committee.export.cascade_onnx.export import build_from_bundle

    model, _, src = build_from_bundle(bundle, source_size=source, form=form, **kw)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]), model


def run(sess, images: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": images})))


def assert_same(out: dict, ref, near: np.ndarray, what: str, atol: float = 1e-5) -> int:
    """Exact agreement off the near-threshold samples; returns how many samples are near."""
    differ = (out["labels"] != ref.labels) | (out["exit_stage"] != ref.exit_stage) | (out["flags"] != ref.flags)
    assert not (differ & ~near).any(), f"{what}: {int((differ & ~near).sum())} samples differ"
    agree = ~differ
    np.testing.assert_allclose(out["confidence"][agree], ref.confidence[agree], atol=atol, err_msg=what)
    np.testing.assert_allclose(out["probs"][agree], ref.probs[agree], atol=atol, err_msg=what)
    if near.any():
        print(f"{what}: {int(near.sum())} samples within {NEAR:g} of a threshold, {int((differ & near).sum())} differ")
    return int(near.sum())


def check_equal(bundle: Path, images: np.ndarray, source: str, forms=("compact", "mask"),
                atol: float = 1e-5) -> np.ndarray:
    with CascadeModel(bundle, threads=1) as model:
        ref = model.predict(images)
        near = near_threshold(model, images)
    for form in forms:
        sess, _ = fused(bundle, form, source)
        assert_same(run(sess, images), ref, near, f"{bundle.name} {form}", atol)
    return ref.exit_stage


# ---------------------------------------------------------------------------------------------- equality
def covering_preprocessings() -> list[Preprocessing]:
    """Every combination of resize policy, interpolation, implementation, antialias and colour (the
    options that change the resize weights and rounding), each with a different channel order,
    layout and normalization in turn; every value of every option appears."""
    by_key: dict[tuple, list] = {}
    for p in all_preprocessings():
        by_key.setdefault((p.resize, p.interpolation, p.resize_impl, p.antialias, p.color), []).append(p)
    return [ps[i % len(ps)] for i, ps in enumerate(by_key.values())]


COVER = covering_preprocessings()
GROUPS = [COVER[i:i + 5] for i in range(0, len(COVER), 5)]
SOURCES = ((23, 31, 3), (7, 5, 1), (12, 12, 3), (16, 10, 1))


@pytest.mark.parametrize("group", range(len(GROUPS)))
def test_every_preprocessing_combination_matches_runtime(tmp_path, group):
    h, w, c = SOURCES[group % len(SOURCES)]
    images = np.random.default_rng(group).integers(0, 256, (96, h, w, c), dtype=np.uint8)
    members = []
    for i, pp in enumerate(GROUPS[group]):
        d = {**pp.to_dict(), "size": list(SIZES[i])}
        members.append((f"m{i}", d, lambda p, d=d, i=i: linear_member(p, d, 0.6, seed=group * 10 + i)))
    bundle = write_bundle(tmp_path / f"g{group}", members, images)
    stages = check_equal(bundle, images, (h, w, c))
    assert len(np.unique(stages)) >= 3  # the cascade really exits at several stages


def test_precision_variants_match_runtime(tmp_path):
    from edge_committee.precision.fp16 import fp16_from_fp32
    from edge_committee.precision.int8 import int8_from_fp32

    x, _ = make_images(160, 4)
    pps = [{"size": [8, 8], "color": "gray", "mean": [0.5], "std": [0.25]},
           {"size": [10, 10], "color": "rgb", "scale": 0.0078125, "offset": -1.0, "layout": "NHWC"},
           {"size": [12, 12], "color": "rgb", "channel_order": "BGR", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.2, 0.2]},
           {"size": [9, 9], "color": "rgb", "mean": [0.5], "std": [0.25]}]
    tmp = tmp_path / "fp32"
    tmp.mkdir()
    fp32 = [cnn_member(tmp / f"{i}.onnx", pp, seed=i) for i, pp in enumerate(pps)]

    def fp16(i, keep_io):
        return lambda p: fp16_from_fp32(fp32[i], p, keep_io_types=keep_io)

    def int8(i):
        return lambda p: (int8_from_fp32(fp32[i], p, Preprocessing.from_dict(pps[i])(x[:64])), p)[1]

    members = [("int8", pps[0], int8(0)), ("fp16", pps[1], fp16(1, True)), ("fp16io", pps[2], fp16(2, False)),
               ("fp32", pps[3], lambda p: cnn_member(p, pps[3], seed=3))]
    bundle = write_bundle(tmp_path / "prec", members, x)
    kinds = {n.op_type for n in onnx.load(str(bundle / "members" / "int8.onnx")).graph.node}
    assert "QuantizeLinear" in kinds and "DequantizeLinear" in kinds
    assert onnx.load(str(bundle / "members" / "fp16io.onnx")).graph.input[0].type.tensor_type.elem_type == \
        onnx.TensorProto.FLOAT16
    # an INT8 member quantizes its input: a 1e-7 difference in the preprocessed value (MatMul vs
    # einsum summation order) can move a value to the next int8 level, so probabilities agree to 1e-4
    stages = check_equal(bundle, x, "12x12x3", atol=1e-4)
    assert len(np.unique(stages)) >= 3


@pytest.mark.parametrize("kind", ["ensemble", "single"])
def test_ensemble_and_single_member_are_degenerate_cascades(tmp_path, kind):
    x, _ = make_images(64, 5)
    pps = [{"size": [6, 6], "color": "gray", "mean": [0.5], "std": [0.25]}, {"size": [12, 12], "color": "rgb"}]
    members = [(f"m{i}", pp, lambda p, pp=pp, i=i: linear_member(p, pp, 0.5, seed=i)) for i, pp in enumerate(pps)]
    members = members if kind == "ensemble" else members[1:]
    bundle = write_bundle(tmp_path / kind, members, x, thresholds=[NEVER_EXIT] * (len(members) - 1), kind=kind)
    stages = check_equal(bundle, x, "12x12x3")
    assert (stages == len(members) - 1).all()  # everybody runs every member


@pytest.mark.parametrize("kind", ["margin", "neg_entropy"])
def test_other_confidence_functions(tmp_path, kind):
    x, _ = make_images(96, 6)
    pps = [{"size": [6, 6], "color": "gray", "mean": [0.5], "std": [0.25]}, {"size": [8, 8], "color": "rgb"},
           {"size": [12, 12], "color": "rgb"}]
    members = [(f"m{i}", pp, lambda p, pp=pp, i=i: linear_member(p, pp, 0.7, seed=i)) for i, pp in enumerate(pps)]
    bundle = write_bundle(tmp_path / kind, members, x, confidence_kind=kind)
    assert len(np.unique(check_equal(bundle, x, "12x12x3"))) == 3


def test_nonfinite_logits_give_the_reference_flags(tmp_path):
    raw = {"size": [12, 12], "color": "gray", "scale": 1.0, "offset": 0.0}
    members = [("nan0", raw, lambda p: nan_member(p, raw, 0, seed=1)),
               ("nan1", raw, lambda p: nan_member(p, raw, 143, seed=2)),
               ("nan2", raw, lambda p: nan_member(p, raw, 70, seed=3))]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 12, 12, 1), dtype=np.uint8)
    for pixel in (0, 143, 70):  # each member sees NaN (< 100), -inf (== 100) or a finite value
        x.reshape(200, -1)[:, pixel] = rng.choice([50, 100, 180, 220], 200)
    bundle = write_bundle(tmp_path / "nan", members, x, thresholds=[0.5, 0.5])
    with CascadeModel(bundle, threads=1) as model:
        ref = model.predict(x)
    assert ref.flags.sum() > 20 and (ref.labels == -1).sum() > 0  # the case really happens
    for form in ("compact", "mask"):
        out = run(fused(bundle, form, "12x12x1")[0], x)
        np.testing.assert_array_equal(out["flags"], ref.flags)
        np.testing.assert_array_equal(out["labels"], ref.labels)
        np.testing.assert_array_equal(out["exit_stage"], ref.exit_stage)
        np.testing.assert_array_equal(np.isnan(out["confidence"]), np.isnan(ref.confidence))
        np.testing.assert_allclose(out["probs"], ref.probs, atol=1e-5)


def tiny_bundle(tmp_path: Path, n: int = 64, thresholds=None) -> tuple[Path, np.ndarray]:
    x, _ = make_images(n, 7)
    pps = [{"size": [6, 6], "color": "gray", "mean": [0.5], "std": [0.25]},
           {"size": [12, 12], "color": "rgb", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}]
    members = [(f"m{i}", pp, lambda p, pp=pp, i=i: linear_member(p, pp, 0.5, seed=i)) for i, pp in enumerate(pps)]
    return write_bundle(tmp_path / "tiny", members, x, thresholds=thresholds), x


@pytest.mark.parametrize("form", ["compact", "mask"])
def test_empty_batch(tmp_path, form):
    bundle, x = tiny_bundle(tmp_path)
    out = run(fused(bundle, form, "12x12x3")[0], x[:0])
    assert out["labels"].shape == out["confidence"].shape == out["exit_stage"].shape == out["flags"].shape == (0,)
    assert out["probs"].shape == (0, 4)
    with CascadeModel(bundle, backend="onnxrt-fused", form=form) as model:
        assert model.predict(x[:0]).probs.shape == (0, 4)
        assert model.predict([]).labels.shape == (0,)


# ---------------------------------------------------------------------------------------------- early exit
def executed_nodes(sess_model, images: np.ndarray, tmp_path: Path) -> list[tuple[str, str]]:
    """(name, op type) of the nodes ONNX Runtime's profiler saw run (subgraph nodes included)."""
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "prof")
    sess = ort.InferenceSession(sess_model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    sess.run(None, {"images": images})
    events = json.loads(Path(sess.end_profiling()).read_text())
    return [(e["name"][: -len("_kernel_time")], e["args"]["op_name"]) for e in events
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]


@pytest.mark.parametrize("form", ["compact", "mask"])
def test_untaken_branch_does_not_run(tmp_path, form):
    x, _ = make_images(8, 8)
    for threshold, later_runs in ((ALWAYS_EXIT, False), (NEVER_EXIT, True)):
        bundle, _ = tiny_bundle(tmp_path / str(later_runs), thresholds=[threshold])
        _, model = fused(bundle, form, "12x12x3")
        nodes = executed_nodes(model, x, tmp_path)
        member0 = [op for n, op in nodes if n.startswith("s0/") and "gate." not in n]
        stage1 = [(n, op) for n, op in nodes if n.startswith("s1/")]
        assert "Gemm" in member0, "member 0 must run"
        if later_runs:  # the control: the profiler does see member 1 when someone survives
            assert "Gemm" in [op for _, op in stage1]
        else:
            assert stage1 == [], f"nodes of member 1 ran although every sample exited at stage 0: {stage1[:5]}"


# ---------------------------------------------------------------------------------------------- the file
def test_export_writes_a_checked_file_with_metadata_and_lists_it_in_the_bundle(tmp_path):
    from edge_committee._util import sha256_file
    from edge_committee.export.cascade_onnx import read_metadata
    from edge_committee.export.cascade_onnx.export import export_cascade_onnx

    bundle, x = tiny_bundle(tmp_path)
    digest = read_manifest(bundle)["manifest_sha256"]  # the identity inspect prints
    out, inside = export_cascade_onnx(bundle, tmp_path / "c.onnx", into_bundle=True, source_size="12x12x3")
    assert inside == bundle / "fused/cascade.12x12x3.compact.standard.onnx"
    for path in (out, inside):
        onnx.checker.check_model(str(path), full_check=True)
        meta = read_metadata(onnx.load(str(path)))
        assert meta["manifest_sha256"] == digest
        assert meta["cascade"]["members"] == ["m0", "m1"]
        assert meta["source"] == {"height": 12, "width": 12, "channels": 3}
        assert meta["labels"] == LABELS
    manifest = read_manifest(bundle)  # every checksum verified, the new file included
    assert manifest["files"]["fused/cascade.12x12x3.compact.standard.onnx"] == sha256_file(inside)
    assert manifest["fused_onnx"][0]["cascade"]["members"] == ["m0", "m1"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary leftovers
    with CascadeModel(bundle, backend="onnxrt-fused", threads=1) as model:
        pred = model.predict(x)
        assert model.executor.origins[(12, 12, 3)] == str(inside)
    ref = CascadeModel(bundle, threads=1).predict(x)
    np.testing.assert_array_equal(pred.labels, ref.labels)
    np.testing.assert_array_equal(pred.exit_stage, ref.exit_stage)


def test_backend_with_an_explicit_file_lists_and_sizes(tmp_path):
    from edge_committee.errors import EdgeCommitteeError
    from edge_committee.export.cascade_onnx import CascadeDef
    from edge_committee.export.cascade_onnx.export import export_cascade_onnx

    bundle, x = tiny_bundle(tmp_path)
    path = export_cascade_onnx(bundle, tmp_path / "c.onnx", source_size="12x12x3")[0]
    mixed = [x[0], x[1][:9, :10], x[2], x[3][:9, :10]]
    ref = CascadeModel(bundle).predict(mixed)
    with CascadeModel(bundle, backend="onnxrt-fused", path=path) as model:
        np.testing.assert_array_equal(model.predict(x).labels, CascadeModel(bundle).predict(x).labels)
        with pytest.raises(EdgeCommitteeError, match="takes 12x12x3 images; got 9x10x3"):
            model.predict(mixed)
    with CascadeModel(bundle, backend="onnxrt-fused") as model:  # one fused model per source size
        pred = model.predict(mixed)
        assert set(model.executor.origins) == {(12, 12, 3), (9, 10, 3)}
    np.testing.assert_array_equal(pred.labels, ref.labels)
    np.testing.assert_array_equal(pred.exit_stage, ref.exit_stage)
    other = export_cascade_onnx(bundle, tmp_path / "o.onnx", source_size="12x12x3",
                                cascade=CascadeDef(["m1", "m0"], [0.5]))[0]
    with pytest.raises(EdgeCommitteeError, match=r"o.onnx: cannot run this bundle: it encodes \['m1', 'm0'\]"):
        CascadeModel(bundle, backend="onnxrt-fused", path=other).__enter__()


def test_cli_export_onnx_and_predict(tmp_path, capsys):
    from edge_committee.cli.main import main

    bundle, x = tiny_bundle(tmp_path)
    out = tmp_path / "cli.onnx"
    assert main(["export-onnx", str(bundle), "--out", str(out), "--source-size", "12x12", "--form", "mask"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == ["N", 12, 12, 3]  # channels: 3 because a member is rgb
    np.save(tmp_path / "x.npy", x[:5])
    rows = {}
    for backend in ("onnxrt", "onnxrt-fused"):
        assert main(["predict", str(bundle), str(tmp_path / "x.npy"), "--json", "--backend", backend]) == 0
        rows[backend] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["class"], r["exit_stage"]) for r in rows["onnxrt"]] == \
        [(r["class"], r["exit_stage"]) for r in rows["onnxrt-fused"]]
    assert main(["export-onnx", str(bundle), "--out", str(tmp_path / "e.onnx"), "--source-size", "8x8",
                 "--members", "m1,m0", "--ensemble"]) == 0


# ---------------------------------------------------------------------------------------------- bad input
def _one_line_error(capsys, argv: list[str], match: str) -> None:
    from edge_committee.cli.main import main

    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and match in err, err


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    bundle, _ = tiny_bundle(tmp_path)
    out = tmp_path / "out" / "c.onnx"
    base = ["export-onnx", str(bundle), "--out", str(out)]
    _one_line_error(capsys, base, "--source-size is required")
    _one_line_error(capsys, base + ["--source-size", "12by12"], "is not WxH or WxHxC: width x height")
    _one_line_error(capsys, base + ["--source-size", "12x12", "--form", "mask", "--gate", "plugin"],
                    "cannot build the mask form")
    _one_line_error(capsys, base + ["--source-size", "12x12", "--members", "m0,zz", "--thresholds", "0.5"],
                    "no member named 'zz'")
    _one_line_error(capsys, base + ["--source-size", "12x12", "--members", "m0,m1"],
                    "2 members need 1 thresholds")

    # a member with a fixed batch size cannot run on a varying number of survivors
    m = onnx.load(str(bundle / "members" / "m1.onnx"))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(m, str(bundle / "members" / "m1.onnx"))
    finalize_manifest(bundle, read_manifest(bundle, verify=False), only_listed=True)
    _one_line_error(capsys, base + ["--source-size", "12x12"],
                    "member 'm1' (" + str(bundle / "members" / "m1.onnx") + ") cannot be inlined: its input 'input' "
                    "has a fixed batch size 1")
    # a member with two inputs
    g = m.graph
    g.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    g.input.append(onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, ["batch", 1]))
    onnx.save(m, str(bundle / "members" / "m1.onnx"))
    finalize_manifest(bundle, read_manifest(bundle, verify=False), only_listed=True)
    _one_line_error(capsys, base + ["--source-size", "12x12"], "cannot be inlined: it has 2 inputs (input, extra)")

    # no chosen cascade (the manifest check names it before the exporter's own check would)
    manifest = read_manifest(bundle, verify=False)
    manifest["cascade"] = {}
    finalize_manifest(bundle, manifest, only_listed=True)
    before = (bundle / "manifest.json").read_bytes()
    _one_line_error(capsys, base + ["--source-size", "12x12", "--into-bundle"], "cascade is missing key 'members'")
    assert before == (bundle / "manifest.json").read_bytes()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert not (bundle / "fused").exists()
    assert [p for p in bundle.parent.iterdir() if p.name.startswith(".")] == []


def test_unsupported_preprocessing_is_refused_naming_member_and_form(tmp_path, monkeypatch):
    import dataclasses

    from edge_committee.export.cascade_onnx import FusedExportError

    bundle, _ = tiny_bundle(tmp_path)
    real = Preprocessing.plan

    def odd_plan(self, source_hw, source_channels=3):  # a plan field value no runtime knows yet
        plan = real(self, source_hw, source_channels)
        return dataclasses.replace(plan, layout="CHW") if self.color == "rgb" else plan

    monkeypatch.setattr(Preprocessing, "plan", odd_plan)
    with pytest.raises(FusedExportError) as err:
        fused(bundle, "mask", "12x12x3")
    assert str(err.value) == ("member 'm1': its preprocessing cannot be written in the mask form with the "
                              "standard gate: layout 'CHW' is not one of NCHW, NHWC")


def test_pil_rounding_is_refused_in_the_tensorrt_form_unless_float32(tmp_path, capsys):
    bundle, x = tiny_bundle(tmp_path)  # members with the default resize_impl pil: rounded passes
    out = tmp_path / "trt.onnx"
    base = ["export-onnx", str(bundle), "--out", str(out), "--source-size", "12x12", "--gate", "plugin"]
    _one_line_error(capsys, base, "member 'm0': its preprocessing cannot be written in the compact form with the "
                                  "plugin gate: it rounds to uint8 between resize passes")
    assert not out.exists()
    from edge_committee.cli.main import main

    assert main(base + ["--preprocess", "float32"]) == 0
    from edge_committee.export.cascade_onnx import read_metadata

    assert read_metadata(onnx.load(str(out)))["preprocess"] == "float32"


def test_reselect_drops_fused_files_of_the_old_cascade(built_bundle, tmp_path):
    from edge_committee.export.cascade_onnx.export import export_cascade_onnx
    from edge_committee.pipeline import reselect

    _, inside = export_cascade_onnx(built_bundle, tmp_path / "c.onnx", into_bundle=True, source_size="12x12x3")
    before = read_manifest(built_bundle)
    rel = before["fused_onnx"][0]["file"]
    reselect(built_bundle, "worst_cost", "largest")  # same budget, same cascade: the file stays
    assert read_manifest(built_bundle)["fused_onnx"][0]["file"] == rel
    smallest = min(m["macs"] for m in before["members"])
    after = reselect(built_bundle, "worst_cost", smallest)  # only the cheapest member fits: a new cascade
    assert after["cascade"]["members"] != before["cascade"]["members"]
    assert after["fused_onnx"] == [] and rel not in after["files"]
    assert not (built_bundle / rel).exists()
    read_manifest(built_bundle)  # still verifies: nothing unlisted, checksums match


def test_source_size_is_width_by_height_like_camera_uris(caplog):
    """One convention: WxH text (as v4l2://...?size=640x480), NumPy (H, W, C) tuples; axes named."""
    from edge_committee.export.cascade_onnx.build import Source
    from edge_committee.export.cascade_onnx.export import bundle_file_name, describe_size, parse_source_size

    assert parse_source_size("640x480") == (480, 640)
    assert parse_source_size("640x480x3") == (480, 640, 3)
    source = Source(480, 640, 3)
    assert describe_size(source) == "640x480x3 (width 640, height 480, 3 channels)"
    assert bundle_file_name(source, "compact", "standard") == "fused/cascade.640x480x3.compact.standard.onnx"
