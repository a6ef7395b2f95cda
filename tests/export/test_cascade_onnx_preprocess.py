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
from edge_committee.export.cascade_onnx.preprocess import add_preprocessing, check_plan, output_shape  # noqa: E402

#: spec field -> the module constant listing its allowed values
OPTIONS = {"resize": "RESIZE_MODES", "interpolation": "INTERPOLATIONS", "color": "COLORS",
           "channel_order": "CHANNEL_ORDERS", "layout": "LAYOUTS"}
NORMALIZATIONS = ({}, {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                  {"scale": 0.0078125, "offset": -1.0})
#: (height, width, channels) of raw images: downscale non-square, upscale, both at once
SOURCES = ((23, 31, 3), (7, 5, 1), (12, 9, 3))


def all_preprocessings(size=(10, 8)) -> list[spec.Preprocessing]:
    """One Preprocessing per combination of every spec option and normalization."""
    keys = list(OPTIONS)
    out = []
    for values in itertools.product(*(getattr(spec, OPTIONS[k]) for k in keys)):
        for norm in NORMALIZATIONS:
            d = {"size": list(size), **dict(zip(keys, values)), "crop_pct": 0.875, **norm}
            if d["color"] == "gray" and "mean" in d:
                d["mean"], d["std"] = d["mean"][:1], d["std"][:1]
            out.append(spec.Preprocessing.from_dict(d))
    return out


def test_options_come_from_the_spec():
    # the combinations grow with the spec's constants: a new interpolation is one more factor
    expected = np.prod([len(getattr(spec, OPTIONS[k])) for k in OPTIONS]) * len(NORMALIZATIONS)
    assert len(all_preprocessings()) == expected >= 96


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: "x".join(map(str, s)))
def test_onnx_preprocessing_equals_numpy(source):
    h, w, c = source
    pps = all_preprocessings()
    g = GraphBuilder("t/")
    g.op("Cast", ["images"], outputs=["xf"], to=onnx.TensorProto.FLOAT)
    outputs = []
    for i, pp in enumerate(pps):
        plan = pp.plan((h, w), c)
        check_plan(plan, f"m{i}", "compact")
        add_preprocessing(g, plan, "xf", f"out{i}", onnx.TensorProto.FLOAT)
        outputs.append(onnx.helper.make_tensor_value_info(f"out{i}", onnx.TensorProto.FLOAT,
                                                          ["N", *output_shape(plan)]))
    images_in = onnx.helper.make_tensor_value_info("images", onnx.TensorProto.UINT8, ["N", h, w, c])
    opsets = [onnx.helper.make_opsetid("", 17)]
    model = onnx.helper.make_model(g.graph("pre", [images_in], outputs), opset_imports=opsets)
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(h * w).integers(0, 256, (5, h, w, c), dtype=np.uint8)
    x[0] = 0  # extremes: all black, all white
    x[1] = 255
    got = sess.run(None, {"images": x})
    for pp, y in zip(pps, got):
        ref = pp(x)
        assert y.shape == ref.shape and y.dtype == ref.dtype, pp
        # float32 summation order differs between MatMul and einsum: ~1e-7 relative
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(ref).max())), err_msg=str(pp))


def test_float16_member_input_gets_a_cast():
    pp = spec.Preprocessing.from_dict({"size": [4, 4], "color": "gray"})
    g = GraphBuilder("t/")
    add_preprocessing(g, pp.plan((8, 8), 1), "xf", "out", onnx.TensorProto.FLOAT16)
    assert g.nodes[-1].op_type == "Cast" and list(g.nodes[-1].output) == ["out"]


def test_plan_fields_the_builder_cannot_execute_are_refused():
    import dataclasses

    plan = spec.Preprocessing.from_dict({"size": [4, 4], "color": "gray"}).plan((8, 8), 1)
    bad = [dataclasses.replace(plan, layout="CHW"),
           dataclasses.replace(plan, steps=(spec.ResizeStep("d", plan.steps[0].weights),)),
           dataclasses.replace(plan, steps=(spec.ResizeStep("h", np.ones((4, 9), np.float32)),)),
           dataclasses.replace(plan, mul=np.array([np.nan], np.float32))]
    for p in bad:
        with pytest.raises(FusedExportError, match="member 'm': its preprocessing cannot be written in the mask form"):
            check_plan(p, "m", "mask")
