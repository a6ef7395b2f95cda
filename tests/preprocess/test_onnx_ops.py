"""Preprocessing as ONNX ops (built from ``Preprocessing.plan``) equals ``Preprocessing.__call__``.

Every option the spec offers is taken from the constants of ``edge_committee/spec/preprocess.py``
(not a list written here), so a new interpolation, crop policy, colour or layout is tested as
soon as it lands. All combinations for one source size run in one ONNX model (one output per
combination) to keep the test fast.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge_committee.spec import preprocess as spec

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edge_committee.export.cascade_onnx import FusedExportError  # noqa: E402
from edge_committee.export.cascade_onnx._graph import GraphBuilder  # noqa: E402
from edge_committee.preprocess.onnx_ops import add_preprocessing, check_plan, exact_in_float32, output_shape  # noqa: E402

#: spec field -> the module constant listing its allowed values
OPTIONS = {"resize": "RESIZE_MODES", "interpolation": "INTERPOLATIONS", "color": "COLORS",
           "channel_order": "CHANNEL_ORDERS", "layout": "LAYOUTS", "resize_impl": "RESIZE_IMPLS"}
#: normalizations, taken in turn by the combinations (they only change the final Mul/Add)
NORMALIZATIONS = ({}, {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                  {"scale": 0.0078125, "offset": -1.0})
#: (height, width, channels) of raw images: downscale non-square, upscale, both at once
SOURCES = ((23, 31, 3), (7, 5, 1), (12, 9, 3))


def _antialias(d: dict) -> tuple:
    """The antialias values the spec allows for these options (torch's F.interpolate has both)."""
    if d["resize_impl"] in ("pil", "tf"):
        return (None,)
    return (None, True) if d["interpolation"] in ("bilinear", "bicubic") else (None,)


def all_preprocessings(size=(10, 8)) -> list[spec.Preprocessing]:
    """One Preprocessing per combination of every option the spec offers (antialias where allowed)."""
    keys = list(OPTIONS)
    out = []
    for values in itertools.product(*(getattr(spec, OPTIONS[k]) for k in keys)):
        d = {"size": list(size), **dict(zip(keys, values)), "crop_pct": 0.875}
        if d["interpolation"] not in spec.IMPL_INTERPOLATIONS[d["resize_impl"]]:
            continue  # refused by the spec (tf.image.resize here: bilinear and nearest)
        for antialias in _antialias(d):
            norm = dict(NORMALIZATIONS[len(out) % len(NORMALIZATIONS)])
            if d["color"] == "gray" and "mean" in norm:
                norm["mean"], norm["std"] = norm["mean"][:1], norm["std"][:1]
            extra = {} if antialias is None else {"antialias": antialias}
            out.append(spec.Preprocessing.from_dict({**d, **norm, **extra}))
    return out


def test_options_come_from_the_spec():
    # the combinations grow with the spec's constants: a new interpolation is one more factor
    pps = all_preprocessings()
    others = [k for k in OPTIONS if k not in ("interpolation", "resize_impl")]
    pairs = sum(len(v) for v in spec.IMPL_INTERPOLATIONS.values())  # (resize_impl, interpolation) the spec allows
    expected = pairs * np.prod([len(getattr(spec, OPTIONS[k])) for k in others])
    assert len(pps) >= expected >= 256
    for key in OPTIONS:
        assert {getattr(p, key) for p in pps} == set(getattr(spec, OPTIONS[key]))
    assert any(p.antialias for p in pps) and any(spec.Preprocessing.plan(p, (23, 31), 3).exact for p in pps)


def _model(pps: list, source: tuple, precision: str):
    h, w, c = source
    g = GraphBuilder("t/")
    g.op("Cast", ["images"], outputs=["xf"], to=onnx.TensorProto.FLOAT)
    outputs = []
    for i, pp in enumerate(pps):
        plan = pp.plan((h, w), c)
        check_plan(plan, f"m{i}", "compact")
        add_preprocessing(g, plan, "xf", f"out{i}", onnx.TensorProto.FLOAT, precision)
        outputs.append(onnx.helper.make_tensor_value_info(f"out{i}", onnx.TensorProto.FLOAT,
                                                          ["N", *output_shape(plan)]))
    images_in = onnx.helper.make_tensor_value_info("images", onnx.TensorProto.UINT8, ["N", h, w, c])
    opsets = [onnx.helper.make_opsetid("", 17)]
    model = onnx.helper.make_model(g.graph("pre", [images_in], outputs), opset_imports=opsets)
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _images(source: tuple) -> np.ndarray:
    h, w, c = source
    x = np.random.default_rng(h * w).integers(0, 256, (4, h, w, c), dtype=np.uint8)
    x[0] = 0  # extremes: all black, all white
    x[1] = 255
    return x


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: "x".join(map(str, s)))
def test_onnx_preprocessing_equals_numpy(source):
    pps = all_preprocessings()
    x = _images(source)
    got = _model(pps, source, "exact").run(None, {"images": x})
    for pp, y in zip(pps, got):
        ref = pp(x)
        assert y.shape == ref.shape and y.dtype == ref.dtype, pp
        if pp.plan(source[:2], source[2]).exact:
            # PIL's uint8 passes: float64 like PreprocessPlan.apply, so bit for bit
            np.testing.assert_array_equal(y, ref, err_msg=str(pp))
        else:  # float32 summation order differs between MatMul and BLAS: ~1e-7 relative
            np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(ref).max())),
                                       err_msg=str(pp))


@pytest.mark.parametrize("source", [SOURCES[0], SOURCES[1], (270, 480, 3)], ids=lambda s: "x".join(map(str, s)))
def test_float32_preprocessing_is_bit_exact(source):
    """The TensorRT form: Pillow's passes in float32 with split weights, bit for bit (no float64 anywhere)."""
    pps = [p for p in all_preprocessings() if p.plan(source[:2], source[2]).exact]
    if source[0] > 100:  # a camera-like frame: large downscales, many taps (the low sums carry)
        pps = pps[::8] + [spec.Preprocessing(size=(16, 16), color="gray", interpolation="bicubic")]
    assert all(exact_in_float32(p.plan(source[:2], source[2])) for p in pps)
    g = GraphBuilder("t/")
    add_preprocessing(g, pps[0].plan(source[:2], source[2]), "xf", "out", onnx.TensorProto.FLOAT, "float32")
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in g.initializers if i.data_type not in (
        onnx.TensorProto.INT64,)) and not any(n.op_type in ("Cast", "MatMul") for n in g.nodes)  # no double, no TF32
    x = _images(source)
    for pp, y in zip(pps, _model(pps, source, "float32").run(None, {"images": x})):
        np.testing.assert_array_equal(y, pp(x), err_msg=str(pp))


def test_plain_float32_moves_at_most_one_grey_level(monkeypatch):
    """Without the split (a plan whose weights are not 22-bit fixed point), float32 may move a tie by one
    level, never more; the same plans through the split are exact (so the exact test above can fail)."""
    from edge_committee.preprocess import onnx_ops

    monkeypatch.setattr(onnx_ops, "exact_in_float32", lambda plan: False)
    source = SOURCES[0]
    pps = [p for p in all_preprocessings() if p.plan(source[:2], source[2]).exact][:48]
    x = _images(source)
    got = _model(pps, source, "float32").run(None, {"images": x})
    moved = 0
    for pp, y in zip(pps, got):
        ref, step = pp(x), float(np.abs(pp.plan(source[:2], source[2]).mul).max())
        diff = np.abs(y - ref)
        assert diff.max() <= step * 1.0001 + 1e-5, pp  # one grey level, never more
        moved += int((diff > 1e-5 + 1e-6 * np.abs(ref)).sum())
    assert 0 < moved <= 0.01 * sum(y.size for y in got)


def test_float16_member_input_gets_a_cast():
    pp = spec.Preprocessing.from_dict({"size": [4, 4], "color": "gray"})
    g = GraphBuilder("t/")
    add_preprocessing(g, pp.plan((8, 8), 1), "xf", "out", onnx.TensorProto.FLOAT16)
    assert g.nodes[-1].op_type == "Cast" and list(g.nodes[-1].output) == ["out"]


def test_plan_fields_the_builder_cannot_execute_are_refused():
    import dataclasses

    plan = spec.Preprocessing.from_dict({"size": [4, 4], "color": "gray"}).plan((8, 8), 1)
    bad = [dataclasses.replace(plan, layout="CHW"),
           dataclasses.replace(plan, steps=(spec.ResizeStep.from_matrix("d", plan.steps[0].weights),)),
           dataclasses.replace(plan, steps=(spec.ResizeStep.from_matrix("h", np.ones((4, 9), np.float32)),)),
           dataclasses.replace(plan, mul=np.array([np.nan], np.float32))]
    for p in bad:
        with pytest.raises(FusedExportError, match="member 'm': its preprocessing cannot be written in the mask form"):
            check_plan(p, "m", "mask")
