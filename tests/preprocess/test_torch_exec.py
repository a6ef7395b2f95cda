"""The preprocessing plan on torch (the device runtime's) equals ``Preprocessing.__call__`` (NumPy).

Every value of every option the spec offers is tried (read from the constants in
``spec/preprocess.py`` and ``preprocess/filters.py``, so a new interpolation, crop policy or resize
implementation is tested when it lands): each value alone, and every (policy, interpolation,
implementation, antialias) combination; gray and RGB sources, up- and down-scaling, odd sizes.

Tolerances: plans that round between steps (PIL's uint8 passes) run in Pillow's integer arithmetic
and must give the NumPy path's values before the affine step exactly; after the float32 ``x * mul + add`` (fused on
torch) the outputs agree to 2e-5 of the full scale ``255 * |mul|``, as float32 plans (the order of
the sums in a matrix product differs) do. With ``exact=False`` (float32 for rounding plans), a value
within float32 rounding of a .5 may round the other way: :func:`test_float32_rounding_differs_only_at_ties`
proves every difference is such a tie.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from edge_committee.spec import preprocess as spec

torch = pytest.importorskip("torch")

from edge_committee.preprocess.torch_exec import TorchPlan  # noqa: E402

GEOMETRY = {"resize": spec.RESIZE_MODES, "interpolation": spec.INTERPOLATIONS, "resize_impl": spec.RESIZE_IMPLS,
            "antialias": (None, False, True)}
PIXELS = {"color": spec.COLORS, "channel_order": spec.CHANNEL_ORDERS, "layout": spec.LAYOUTS}
NORMALIZE = [{}, {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
             {"scale": 1 / 128, "offset": -127 / 128}]
SOURCES = [(1, (28, 28)), (3, (37, 50)), (3, (9, 7))]  # (channels, (H, W)): down, mixed, up


def valid(cfg: dict) -> bool:
    aa, impl = cfg.get("antialias"), cfg.get("resize_impl", "pil")
    if aa and cfg.get("interpolation", "bilinear").startswith("nearest"):
        return False
    if cfg.get("interpolation", "bilinear") not in spec.IMPL_INTERPOLATIONS[impl] or (impl == "tf" and aa):
        return False
    return not (aa is False and impl == "pil")


def configs() -> list[tuple[dict, dict]]:
    """Each option value alone (every normalization), then every geometry combination (the pixel
    options and normalizations in turn)."""
    out = []
    for key, values in {**GEOMETRY, **PIXELS}.items():
        for v in values:
            cfg = {"size": [20, 24], key: v, "crop_pct": 0.875}
            if key == "antialias":
                cfg["resize_impl"] = "torch"
            out += [(cfg, norm) for norm in NORMALIZE if valid(cfg)]
    pixels = list(itertools.product(*PIXELS.values()))
    combos = [dict(zip(GEOMETRY, c)) for c in itertools.product(*GEOMETRY.values())]
    for i, geo in enumerate(c for c in combos if valid(c)):
        cfg = {"size": [17, 15], **geo, **dict(zip(PIXELS, pixels[i % len(pixels)])), "crop_pct": 0.9}
        out.append((cfg, NORMALIZE[i % len(NORMALIZE)]))
    return out


def normalized(cfg: dict, norm: dict) -> dict:
    if "mean" in norm and cfg.get("color") == "gray":
        norm = {"mean": norm["mean"][:1], "std": norm["std"][:1]}
    return {**{k: v for k, v in cfg.items() if v is not None}, **norm}


def assert_plan_matches(pp: spec.Preprocessing, images: np.ndarray, where: str) -> None:
    want = pp(images)
    plan = pp.plan(images.shape[1:3], images.shape[3])
    got = TorchPlan(plan, "cpu")(torch.from_numpy(images)).numpy()
    assert got.shape == want.shape and got.dtype == np.float32, where
    tol = 2e-5 * 255 * float(np.abs(plan.mul).max())
    err = float(np.abs(got.astype(np.float64) - want).max(initial=0))
    assert err <= tol, f"{where}: max |diff| {err:.3g} > {tol:.3g}"


def test_plan_on_torch_matches_numpy():
    rng = np.random.default_rng(0)
    cases = configs()
    for cfg, norm in cases:
        pp = spec.Preprocessing.from_dict(normalized(cfg, norm))
        for channels, hw in SOURCES:
            images = rng.integers(0, 256, (2, *hw, channels), dtype=np.uint8)
            assert_plan_matches(pp, images, f"{pp} on {hw}x{channels}")
    assert len(cases) >= 2 * sum(len(v) for v in {**GEOMETRY, **PIXELS}.values())
    assert any(spec.Preprocessing.from_dict(normalized(c, n)).plan((28, 28), 1).exact for c, n in cases)


def test_exact_plan_is_bit_exact_before_the_affine_step():
    """A PIL plan (rounding after each pass) runs in int32 fixed point, never float64: the same integers as NumPy."""
    pp = spec.Preprocessing.from_dict({"size": [40, 40], "interpolation": "bicubic", "color": "gray"})
    images = np.random.default_rng(4).integers(0, 256, (4, 28, 31, 3), dtype=np.uint8)
    plan = pp.plan((28, 31), 3)
    assert plan.exact
    unit = dataclasses.replace(plan, mul=np.ones(1, np.float32), add=np.zeros(1, np.float32))
    runner = TorchPlan(unit, "cpu")
    assert runner.work == torch.int32
    got = runner(torch.from_numpy(images)).numpy()
    assert np.array_equal(got, unit.apply(images))


def test_fp16_output_is_the_float32_result_cast():
    pp = spec.Preprocessing.from_dict({"size": [12, 12], "mean": [0.5], "std": [0.25], "color": "gray"})
    images = np.random.default_rng(1).integers(0, 256, (2, 30, 20, 3), dtype=np.uint8)
    plan = pp.plan((30, 20), 3)
    got = TorchPlan(plan, "cpu", torch.float16)(torch.from_numpy(images))
    assert got.dtype == torch.float16
    np.testing.assert_allclose(got.numpy().astype(np.float32), pp(images), rtol=1e-3, atol=1e-3)  # fp16 rounding


def test_every_plan_field_is_executed():
    """A plan with rounding after every step and non-trivial colour and affine parts (mutated plan)."""
    pp = spec.Preprocessing.from_dict({"size": [5, 7], "color": "rgb", "channel_order": "BGR",
                                       "scale": 0.5, "offset": 3.0, "layout": "NHWC"})
    images = np.random.default_rng(2).integers(0, 256, (4, 11, 13, 3), dtype=np.uint8)
    plan = pp.plan((11, 13), 3)
    steps = tuple(dataclasses.replace(s, round_clip=True) for s in plan.steps)
    rounded = dataclasses.replace(plan, steps=steps, color_round=True, mul=np.array([0.5, 1.0, 2.0], np.float32),
                                  add=np.array([1.0, -2.0, 0.25], np.float32))
    assert not np.array_equal(rounded.apply(images), plan.apply(images)), "the mutated fields must change the result"
    _compare(rounded, rounded, images)
    with pytest.raises(AssertionError):  # the comparison can fail: a torch plan that drops the BGR swap
        _compare(rounded, dataclasses.replace(rounded, color=np.eye(3, dtype=np.float32)), images)


def _compare(numpy_plan, torch_plan, images) -> None:
    want = numpy_plan.apply(images)
    got = TorchPlan(torch_plan, "cpu")(torch.from_numpy(images)).numpy()
    assert np.abs(got - want).max() <= 2e-5 * 255 * float(np.abs(numpy_plan.mul).max())


@pytest.mark.parametrize("src,size", [((28, 28), (40, 40)), ((11, 13), (5, 7)), ((37, 50), (20, 24))])
def test_float32_rounding_differs_only_at_ties(src, size):
    """exact=False, one rounding step: every value that rounds differently from NumPy is a .5 tie (1e-4)."""
    pp = spec.Preprocessing.from_dict({"size": list(size), "resize_impl": "pil"})
    images = np.random.default_rng(3).integers(0, 256, (6, *src, 3), dtype=np.uint8)
    plan = pp.plan(src, 3)
    assert all(s.round_clip for s in plan.steps)
    unit = dict(mul=np.ones(3, np.float32), add=np.zeros(3, np.float32), layout="NHWC")
    flips = 0
    for which in range(len(plan.steps)):  # the plan up to step `which`, rounding only there
        head = [dataclasses.replace(s, round_clip=False) for s in plan.steps[: which + 1]]
        raw = dataclasses.replace(plan, steps=tuple(head), **unit).apply(images)  # NumPy, before that rounding
        head[-1] = dataclasses.replace(head[-1], round_clip=True)
        rounded = dataclasses.replace(plan, steps=tuple(head), **unit)
        want = rounded.apply(images)
        got = TorchPlan(rounded, "cpu", exact=False)(torch.from_numpy(images)).numpy()
        off = got != want
        ties = np.abs(raw - np.floor(raw) - 0.5) < 1e-4
        assert np.all(ties[off]), f"{int((off & ~ties).sum())} values round differently without a tie"
        assert np.all(np.abs(got - want)[off] == 1.0)
        flips += int(off.sum())
    if src == (28, 28):
        assert flips > 0, "upscaling makes ties: this case should exercise the check"
