"""Every execution path of a plan against the plan's reference (:meth:`PreprocessPlan.apply`).

One harness: every combination of options the spec offers (from the spec's own constants, via
``all_preprocessings``), random images at several sizes (down, up, mixed, camera-sized), and per
path its stated tolerance:

- CPU exact, native (the C++ banded resampler) and without the extension: equal, bit for bit;
- CPU fast (PyTorch's uint8 resize): PIL bilinear/bicubic plans within one grey level before the
  normalization; every other plan exact;
- the shared cascade preprocessing: equal to each member preprocessing its survivors alone.

The torch executor and the ONNX builder have their own files (test_torch_exec.py, test_onnx_ops.py),
against the same reference.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_committee.preprocess import cpu
from edge_committee.preprocess.shared import SharedPreprocessing
from edge_committee.spec.preprocess import Preprocessing

from tests.preprocess.test_onnx_ops import all_preprocessings

SOURCES = ((23, 31, 3), (7, 5, 1), (12, 9, 3), (40, 64, 3))
native = pytest.mark.skipif(not cpu.native(), reason="edge_committee._C (the native resampler) is not built")


def _images(shape, n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _levels(plan, a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference in grey levels (0..255 scale) between two member inputs of ``plan``."""
    axis = (None, slice(None), None, None) if plan.layout == "NCHW" else (None, None, None, slice(None))
    scale = np.abs(plan.mul.astype(np.float64))[axis]
    return float((np.abs(a.astype(np.float64) - b) / scale).max(initial=0))


@native
@pytest.mark.parametrize("source", SOURCES, ids=lambda s: "x".join(map(str, s)))
def test_native_exact_equals_the_reference(source):
    images = _images(source)
    for pp in all_preprocessings(size=(10, 8)):
        plan = pp.plan(source[:2], source[2])
        want = plan.apply(images)
        got = cpu.execute(plan, images, "exact")
        if plan.exact:
            assert np.array_equal(got, want), f"{pp}: not bit-exact"
        else:  # float32 taps, summed in another order
            assert _levels(plan, got, want) <= 1e-3, pp


@pytest.mark.parametrize("source", SOURCES[:2], ids=lambda s: "x".join(map(str, s)))
def test_without_the_extension_the_reference_runs(source, monkeypatch):
    monkeypatch.setattr(cpu, "_ext", lambda: None)
    images = _images(source, seed=1)
    for pp in all_preprocessings(size=(6, 9))[::7]:
        plan = pp.plan(source[:2], source[2])
        assert np.array_equal(cpu.execute(plan, images), plan.apply(images)), pp


def test_fast_is_within_one_grey_level():
    pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    checked = 0
    for source in ((23, 31, 3), (96, 128, 3), (480, 640, 3)):
        images = rng.integers(0, 256, (2, *source), dtype=np.uint8)
        for pp in all_preprocessings(size=(24, 20))[::3]:
            plan = pp.plan(source[:2], source[2])
            want, got = plan.apply(images), cpu.execute(plan, images, "fast")
            if plan.exact and plan.geometry and plan.geometry.interpolation in ("bilinear", "bicubic"):
                assert _levels(plan, got, want) <= 1.0 + 1e-3, pp
                checked += 1
            elif plan.exact:
                assert np.array_equal(got, want), pp
    assert checked >= 10


def test_fast_differs_from_exact_somewhere():
    """The fast path is really another computation (so the exact tests above can fail)."""
    pytest.importorskip("torch")
    pp = Preprocessing(size=(224, 224), resize="center_crop", crop_pct=0.875, interpolation="bicubic")
    images = _images((480, 640, 3), n=1, seed=5)
    plan = pp.plan((480, 640), 3)
    assert not np.array_equal(cpu.execute(plan, images, "fast"), cpu.execute(plan, images, "exact"))


@native
def test_camera_sized_frames_equal_pil_itself():
    """1080p -> torchvision's Resize(256) + CenterCrop(224), bicubic: the PIL pixels, bit for bit."""
    from PIL import Image

    frame = _images((1080, 1920, 3), n=1, seed=6)[0]
    pp = Preprocessing(size=(224, 224), resize="shorter_side", resize_size=256, interpolation="bicubic",
                       scale=1.0, offset=0.0, layout="NHWC")
    ref = np.asarray(Image.fromarray(frame).resize((455, 256), Image.BICUBIC), np.float32)[16:240, 116:340]
    assert np.array_equal(pp(frame[None])[0], ref)


@native
def test_the_native_resampler_refuses_a_band_outside_the_image():
    ext = cpu._ext()
    x = _images((4, 5, 1), n=1)
    start, coef = np.array([0, 2], np.int32), np.ones((2, 2), np.int32)  # rows 0-1 and 2-3 of 4
    with pytest.raises(ValueError, match="outside"):
        ext.resample_u8(x, start, coef, np.array([4], np.int32), np.ones((1, 2), np.int32), False, 22)
    assert ext.resample_u8(x, start, coef, np.array([3], np.int32), np.ones((1, 2), np.int32), False, 22).shape \
        == (1, 2, 1, 1)


# ------------------------------------------------------------------------------ shared preprocessing
def _members():
    norm = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    geo = {"size": [24, 24], "resize": "center_crop", "crop_pct": 0.875, "interpolation": "bicubic"}
    return [Preprocessing.from_dict({**geo, **norm}),  # MobileNetV2-like
            Preprocessing.from_dict({**geo, "scale": 1 / 128, "offset": -127 / 128}),  # Lite0-like: same geometry
            Preprocessing.from_dict({**geo, "channel_order": "BGR", "layout": "NHWC"}),  # same resize, BGR
            Preprocessing.from_dict({"size": [28, 28], "color": "gray"})]  # another geometry


@pytest.mark.parametrize("as_list", [False, True])
def test_shared_preprocessing_equals_each_member_alone(as_list):
    images = _images((40, 52, 3), n=8, seed=7)
    batch = [im for im in images] if as_list else images
    if as_list:  # two sizes in one list
        batch[3] = _images((33, 30, 3), n=1, seed=8)[0]
    shared = SharedPreprocessing(batch)
    active = np.arange(8)
    for k, pp in enumerate(_members()):
        got = shared(pp, active)
        want = pp([batch[i] for i in active])
        assert np.array_equal(got, want), k
        active = active[::2] if k % 2 == 0 else active  # survivors
    # stage 0 resized 8; stages 1 and 2 (same geometry) reused their 4 survivors; stage 3 resized its 2
    assert shared.reused == 4 + 4 and shared.computed == 8 + 2


def test_shared_resizes_only_survivors_not_seen():
    images = _images((30, 30, 3), n=6, seed=9)
    a, b = _members()[0], _members()[3]
    shared = SharedPreprocessing(images)
    shared(b, np.array([0, 1, 2]))
    shared(b, np.array([1, 4]))
    assert shared.computed == 4 and shared.reused == 1
    assert np.array_equal(shared(a, np.array([5, 0])), a(images[[5, 0]]))


def test_shared_mode_overrides_the_member_key():
    pytest.importorskip("torch")
    images = _images((200, 300, 3), n=2, seed=10)
    pp = _members()[0]
    fast = SharedPreprocessing(images, "fast")(pp, np.arange(2))
    assert np.array_equal(fast, Preprocessing.from_dict({**pp.to_dict(), "execution": "fast"})(images))
    with pytest.raises(ValueError, match="exact or fast"):
        SharedPreprocessing(images, "quick")


def test_execution_key_is_validated_and_kept():
    pp = Preprocessing.from_dict({"size": [8, 8], "execution": "fast"})
    assert Preprocessing.from_dict(pp.to_dict()) == pp
    from edge_committee.errors import SpecError

    with pytest.raises(SpecError, match="execution"):
        Preprocessing.from_dict({"size": [8, 8], "execution": "turbo"})


def test_the_plan_stores_no_dense_matrix():
    """A 4K frame's plan holds bands: memory ~ output x taps, not output x input."""
    pp = Preprocessing(size=(224, 224), resize="center_crop", crop_pct=0.875, interpolation="bicubic")
    plan = pp.plan((2160, 3840), 3)
    stored = sum(f.nbytes for s in plan.steps for f in (s.start, s.taps))
    assert stored < 224 * 2160 * 8 / 4  # a dense height matrix alone would be 224 x 2160 float64
    assert all(dataclasses.fields(s) and s.taps.shape[1] < 60 for s in plan.steps)
