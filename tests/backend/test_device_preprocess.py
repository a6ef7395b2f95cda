"""The preprocessing plan on torch (the device runtime's) equals ``Preprocessing.__call__`` (NumPy).

Every value of every option the spec offers is tried (read from the constants in
``spec/preprocess.py``, so a new interpolation or crop policy is tested when it lands), on gray and
RGB sources, up- and down-scaling, odd sizes.

Tolerance: float32 rounding, 2e-5 of the full output scale (``255 * |mul|``); only the order of the
sums in the resize products differs from NumPy. Where a plan rounds between steps (``round_clip``,
``color_round``), a value that is a .5 tie up to float32 rounding can round the other way (upscaling
makes exact ties common: measured up to 0.45% of the values of a 28 -> 40 bilinear step rounded to
uint8): there at most 1% of the outputs may differ, each by at most one 0..255 step per rounding
(``|mul|``), and :func:`test_rounding_differs_only_at_ties` proves every such difference is a tie.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from edge_committee.spec import preprocess as spec

torch = pytest.importorskip("torch")

from edge_committee.backend.device.preprocess import TorchPlan  # noqa: E402

OPTIONS = {
    "resize": spec.RESIZE_MODES,
    "interpolation": spec.INTERPOLATIONS,
    "color": spec.COLORS,
    "channel_order": spec.CHANNEL_ORDERS,
    "layout": spec.LAYOUTS,
}
NORMALIZE = [{}, {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
             {"scale": 1 / 128, "offset": -127 / 128}]
SOURCES = [(1, (28, 28)), (3, (37, 50)), (3, (9, 7))]  # (channels, (H, W)): down, mixed, up


def configs():
    """One config per option value (others default; every normalization), plus every option crossed
    at one size (the normalizations in turn)."""
    out = []
    for key, values in OPTIONS.items():
        for v in values:
            out += [({"size": [20, 24], key: v, "crop_pct": 0.875}, norm) for norm in NORMALIZE]
    for i, combo in enumerate(itertools.product(*OPTIONS.values())):
        out.append(({"size": [17, 15], **dict(zip(OPTIONS, combo)), "crop_pct": 0.9}, NORMALIZE[i % len(NORMALIZE)]))
    return out


def normalized(cfg: dict, norm: dict) -> dict:
    if "mean" in norm and cfg.get("color") == "gray":
        norm = {"mean": norm["mean"][:1], "std": norm["std"][:1]}
    return {**cfg, **norm}


def assert_plan_matches(pp: spec.Preprocessing, images: np.ndarray, where: str) -> None:
    want = pp(images)
    plan = pp.plan(images.shape[1:3], images.shape[3])
    got = TorchPlan(plan, "cpu")(torch.from_numpy(images)).numpy()
    assert got.shape == want.shape and got.dtype == np.float32, where
    step = float(np.abs(plan.mul).max())
    err = np.abs(got.astype(np.float64) - want)
    tol = 2e-5 * 255 * step
    rounds = plan.color_round or any(s.round_clip for s in plan.steps)
    if not rounds:
        assert err.max() <= tol, f"{where}: max |diff| {err.max():.3g} > {tol:.3g}"
        return
    off = err > tol
    roundings = int(plan.color_round) + sum(s.round_clip for s in plan.steps)
    assert off.mean() <= 1e-2, f"{where}: {off.mean():.2%} of the outputs differ"
    assert err.max() <= roundings * step + tol, f"{where}: a rounded value differs by {err.max():.3g}"


def test_plan_on_torch_matches_numpy():
    rng = np.random.default_rng(0)
    cases = configs()
    for cfg, norm in cases:
        pp = spec.Preprocessing.from_dict(normalized(cfg, norm))
        for channels, hw in SOURCES:
            images = rng.integers(0, 256, (2, *hw, channels), dtype=np.uint8)
            assert_plan_matches(pp, images, f"{pp} on {hw}x{channels}")
    assert len(cases) >= 2 * sum(len(v) for v in OPTIONS.values())


def test_fp16_output_is_the_float32_result_cast():
    pp = spec.Preprocessing.from_dict({"size": [12, 12], "mean": [0.5], "std": [0.25], "color": "gray"})
    images = np.random.default_rng(1).integers(0, 256, (2, 30, 20, 3), dtype=np.uint8)
    plan = pp.plan((30, 20), 3)
    got = TorchPlan(plan, "cpu", torch.float16)(torch.from_numpy(images))
    assert got.dtype == torch.float16
    assert np.array_equal(got.numpy(), pp(images).astype(np.float16))


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
    err = np.abs(got - want)
    step = float(np.abs(numpy_plan.mul).max())
    assert (err > 1e-4).mean() <= 1e-2 and err.max() <= 3 * step + 1e-4


@pytest.mark.parametrize("src,size", [((28, 28), (40, 40)), ((11, 13), (5, 7)), ((37, 50), (20, 24))])
def test_rounding_differs_only_at_ties(src, size):
    """With one rounding step, every value that rounds differently from NumPy is a .5 tie (within 1e-4)."""
    pp = spec.Preprocessing.from_dict({"size": list(size)})
    images = np.random.default_rng(3).integers(0, 256, (6, *src, 3), dtype=np.uint8)
    plan = pp.plan(src, 3)
    unit = dict(mul=np.ones(3, np.float32), add=np.zeros(3, np.float32), layout="NHWC")
    flips = 0
    for which in range(len(plan.steps)):  # round after step `which`, the last step kept
        head = list(plan.steps[: which + 1])
        raw = dataclasses.replace(plan, steps=tuple(head), **unit).apply(images)  # NumPy, before rounding
        head[-1] = dataclasses.replace(head[-1], round_clip=True)
        rounded = dataclasses.replace(plan, steps=tuple(head), **unit)
        want = rounded.apply(images)
        got = TorchPlan(rounded, "cpu")(torch.from_numpy(images)).numpy()
        off = got != want
        ties = np.abs(raw - np.floor(raw) - 0.5) < 1e-4
        assert np.all(ties[off]), f"{int((off & ~ties).sum())} values round differently without a tie"
        assert np.all(np.abs(got - want)[off] == 1.0)
        flips += int(off.sum())
    if src == (28, 28):
        assert flips > 0, "upscaling makes ties: this case should exercise the check"
