"""Per-member preprocessing: PIL-equivalent resize, colour, normalization, layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edge_committee.spec.preprocess import Preprocessing, resize_matrix


@settings(max_examples=25, deadline=None)
@given(st.integers(4, 40), st.integers(4, 40), st.integers(4, 40), st.integers(0, 2**31 - 1))
def test_bilinear_resize_matches_pil(h_in, h_out, w_out, seed):
    im = np.random.default_rng(seed).integers(0, 256, (h_in, h_in + 3), dtype=np.uint8)
    pp = Preprocessing(size=(h_out, w_out), color="gray")
    ours = pp(im[None, ..., None])[0, 0] * 255
    pil = np.asarray(Image.fromarray(im).resize((w_out, h_out), Image.BILINEAR), np.float32)
    assert np.abs(ours - pil).max() <= 1.0  # PIL rounds to uint8


def test_resize_rows_sum_to_one():
    for n_in, n_out in ((28, 16), (16, 28), (7, 7)):
        np.testing.assert_allclose(resize_matrix(n_in, n_out).sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(resize_matrix(5, 5), np.eye(5, dtype=np.float32))


def test_gray_to_rgb_bgr_nhwc_scale_offset():
    x = np.zeros((2, 4, 4, 3), np.uint8)
    x[..., 0] = 255  # pure red
    pp = Preprocessing(size=(4, 4), color="rgb", channel_order="BGR", layout="NHWC", scale=1 / 127.5, offset=-1.0)
    y = pp(x)
    assert y.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(y[..., 2], 1.0, atol=1e-6)  # red is last in BGR
    np.testing.assert_allclose(y[..., 0], -1.0, atol=1e-6)
    gray = Preprocessing(size=(4, 4), color="gray")(x)
    np.testing.assert_allclose(gray, 76 / 255, atol=1e-6)  # PIL convert("L") of red: round(0.299 * 255)
    rgb_from_gray = Preprocessing(size=(4, 4), color="rgb", mean=[0.5], std=[0.5])(np.full((1, 4, 4, 1), 255, np.uint8))
    assert rgb_from_gray.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(rgb_from_gray, 1.0, atol=1e-6)


def test_center_crop_keeps_the_centre():
    x = np.zeros((1, 20, 40, 1), np.uint8)
    x[:, :, 15:25] = 255  # a bright vertical band in the middle
    pp = Preprocessing(size=(10, 10), resize="center_crop", crop_pct=1.0, color="gray")
    y = pp(x)[0, 0]
    assert y.shape == (10, 10)
    assert y[:, 5].mean() > 0.9 and y[:, 0].mean() < 0.1


def test_list_of_different_sizes():
    ims = [np.zeros((10, 12, 3), np.uint8), np.zeros((30, 20, 3), np.uint8)]
    y = Preprocessing(size=(8, 8))(ims)
    assert y.shape == (2, 3, 8, 8) and y.dtype == np.float32


def test_roundtrip_dict():
    pp = Preprocessing.from_dict({"size": 32, "mean": [0.1, 0.2, 0.3], "std": [1, 1, 1], "layout": "NHWC"})
    assert Preprocessing.from_dict(pp.to_dict()) == pp
    assert pp.input_shape(5) == (5, 32, 32, 3)


def test_bad_raw_input_shape():
    with pytest.raises(EdgeCommitteeError, match=r"\(N, H, W, 1\|3\)"):
        Preprocessing(size=(4, 4))(np.zeros((2, 4, 4, 5), np.uint8))


# ---------------------------------------------------------------------------------------------
# Against the real libraries. Reference pipelines: PIL (convert, resize, crop with zero padding
# as torchvision's CenterCrop pads) and torch F.interpolate on float tensors. Tolerances, on the
# 0..255 scale before normalization: PIL 0 (bit exact); torch 2e-3 (float32 accumulation order).
import math  # noqa: E402

from hypothesis import HealthCheck  # noqa: E402

from edge_committee.errors import EdgeCommitteeError, SpecError  # noqa: E402

TORCH_ATOL = 2e-3
COMBOS = [("pil", "bilinear", None), ("pil", "bicubic", None), ("pil", "nearest", None),
          ("torch", "bilinear", False), ("torch", "bilinear", True), ("torch", "bicubic", False),
          ("torch", "bicubic", True), ("torch", "nearest", None), ("torch", "nearest-exact", None)]
POLICIES = ["stretch", "center_crop", "shorter_side", "squash"]


def _tv_resize_size(h, w, short):  # torchvision _compute_resized_output_size for Resize(int)
    if w <= h:
        return int(short * h / w), short
    return short, int(short * w / h)


def _ref_mid(policy, h, w, size, crop_pct, resize_size):
    if policy == "stretch":
        return size
    scale = (math.floor(size[0] / crop_pct), math.floor(size[1] / crop_pct))
    if policy == "squash":
        return scale
    if policy == "shorter_side":
        return _tv_resize_size(h, w, resize_size or min(scale))
    if scale[0] == scale[1]:
        return _tv_resize_size(h, w, scale[0])
    ratio = min(h / scale[0], w / scale[1])  # timm ResizeKeepRatio
    return round(h / ratio), round(w / ratio)


def _ref_center_crop(x, size):  # torchvision CenterCrop on (C, H, W): pad with 0, then crop
    c, h, w = x.shape
    ch, cw = size
    if ch > h or cw > w:
        pt, pl = max(ch - h, 0) // 2, max(cw - w, 0) // 2
        out = np.zeros((c, max(h, ch), max(w, cw)), x.dtype)
        out[:, pt : pt + h, pl : pl + w] = x
        x, h, w = out, out.shape[1], out.shape[2]
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return x[:, top : top + ch, left : left + cw]


def _reference(im, impl, interp, aa, policy, size, crop_pct, resize_size, color):
    h, w = im.shape[:2]
    mid = _ref_mid(policy, h, w, size, crop_pct, resize_size)
    if impl == "pil":
        pim = Image.fromarray(im if im.shape[2] == 3 else im[..., 0])
        if color == "gray":
            pim = pim.convert("L")
        elif pim.mode == "L":
            pim = pim.convert("RGB")
        resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[interp]
        arr = np.asarray(pim.resize((mid[1], mid[0]), resample), np.float32)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    else:
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(im.astype(np.float32)).permute(2, 0, 1)
        if color == "gray" and t.shape[0] == 3:
            t = (0.2989 * t[0] + 0.587 * t[1] + 0.114 * t[2])[None]
        elif color == "rgb" and t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        kw = {} if aa is None else {"antialias": aa}
        arr = F.interpolate(t[None], size=mid, mode=interp, **kw)[0].numpy()
    return _ref_center_crop(arr, size)


@pytest.mark.parametrize("impl,interp,aa", COMBOS)
@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_matches_the_framework(impl, interp, aa, policy, data):
    """Every combination offered, on random images and sizes, against PIL / torch itself."""
    h, w = data.draw(st.integers(3, 48)), data.draw(st.integers(3, 48))
    # torch's antialias kernel returns a constant when an output side is 1 (a torch quirk)
    size = (data.draw(st.integers(2, 40)), data.draw(st.integers(2, 40)))
    crop_pct = data.draw(st.sampled_from([1.0, 0.875, 0.9, 0.95]))
    resize_size = data.draw(st.one_of(st.none(), st.integers(2, 48))) if policy == "shorter_side" else None
    channels, color = data.draw(st.sampled_from([(3, "rgb"), (3, "gray"), (1, "gray"), (1, "rgb")]))
    im = np.random.default_rng(data.draw(st.integers(0, 2**31))).integers(0, 256, (h, w, channels), dtype=np.uint8)
    pp = Preprocessing(size=size, resize=policy, crop_pct=crop_pct, resize_size=resize_size, interpolation=interp,
                       resize_impl=impl, antialias=aa, color=color, scale=1.0, offset=0.0)
    ours = pp(im[None])[0]
    ref = _reference(im, impl, interp, aa, policy, size, crop_pct, resize_size, color)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=0 if impl == "pil" else TORCH_ATOL)


def test_pil_path_is_bit_exact_on_a_real_sized_photo():
    """A 375x500 RGB image, torchvision's ImageNet eval transform (Resize(256), CenterCrop(224))."""
    im = np.random.default_rng(3).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    for interp, resample in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
        pp = Preprocessing(size=(224, 224), resize="shorter_side", resize_size=256, interpolation=interp,
                           mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
        ref = np.asarray(Image.fromarray(im).resize((341, 256), resample), np.float32)[16:240, 58:282]
        ref = (ref / 255 - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
        np.testing.assert_allclose(pp(im[None])[0].transpose(1, 2, 0), ref, atol=2e-6)


def test_pass_order_probe_is_not_fooled_by_a_probe_both_orders_match():
    """39x14 -> 5x2 bilinear: Pillow runs the vertical pass first, and the first probe image cannot tell
    (both orders give its pixels); found by hypothesis. Every random image must equal Pillow's."""
    pp = Preprocessing(size=(5, 2), interpolation="bilinear", scale=1.0, offset=0.0, layout="NHWC")
    rng = np.random.default_rng(11)
    for _ in range(20):
        im = rng.integers(0, 256, (39, 14, 3), dtype=np.uint8)
        ref = np.asarray(Image.fromarray(im).resize((2, 5), Image.BILINEAR), np.float32)
        np.testing.assert_array_equal(pp(im[None])[0], ref)


def test_plan_weights_are_pil_fixed_point():
    plan = Preprocessing(size=(7, 9), interpolation="bicubic").plan((20, 30), 3)
    for s in plan.steps:
        assert s.weights.dtype == np.float64 and s.round_clip
        k = s.weights * 2**22
        np.testing.assert_array_equal(k, np.round(k))  # integers: 22-bit fixed point
    plan = Preprocessing(size=(7, 9), resize_impl="torch").plan((20, 30), 3)
    assert not any(s.round_clip for s in plan.steps) and not plan.color_round


def test_timm_preset_equals_the_explicit_keys():
    cfg = {"input_size": (3, 240, 240), "interpolation": "bicubic", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
           "crop_pct": 0.882, "crop_mode": "center", "num_classes": 1000, "first_conv": "conv_stem"}
    pp = Preprocessing.from_timm(cfg)
    explicit = Preprocessing.from_dict({"size": [240, 240], "resize": "center_crop", "crop_pct": 0.882,
                                        "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3})
    assert pp == explicit
    assert Preprocessing.from_dict({"timm": cfg, "layout": "NHWC"}).layout == "NHWC"
    with pytest.raises(SpecError, match="crop_mode"):
        Preprocessing.from_timm({**cfg, "crop_mode": "border"})
    with pytest.raises(SpecError, match="contradicts"):
        Preprocessing.from_dict({"timm": cfg, "interpolation": "bilinear"})


@pytest.mark.parametrize("bad,match", [
    ({"size": [True, True]}, "integers"), ({"size": [100000, 8]}, "8192"), ({"size": [8, 8], "mean": ["a"], "std": [1]}, "finite"),
    ({"size": [8, 8], "mean": [float("nan")], "std": [1]}, "finite"), ({"size": [8, 8], "crop_pct": "x"}, "crop_pct"),
    ({"size": [8, 8], "scale": "abc", "offset": 0}, "scale"), ({"size": [8, 8], "std": [1e-45], "mean": [0]}, "overflow"),
    ({"size": [8, 8], "antialias": False}, "PIL always antialiases"), ({"size": [8, 8], "antialias": 1}, "true or false"),
    ({"size": [8, 8], "resize_size": 20}, "shorter_side"), ({"size": [8, 8], "interpolation": "lanczos"}, "bicubic"),
    ({"size": [8, 8], "resize_impl": "cv2"}, "pil, torch"),
])
def test_bad_numbers_are_one_line_spec_errors(bad, match):
    with pytest.raises(SpecError, match=match):
        Preprocessing.from_dict(bad)


def test_empty_and_four_channel_images_are_refused():
    pp = Preprocessing(size=(4, 4))
    with pytest.raises(EdgeCommitteeError, match="zero height"):
        pp(np.zeros((1, 0, 28, 1), np.uint8))
    with pytest.raises(EdgeCommitteeError, match="1\\|3"):
        pp([np.zeros((8, 8, 4), np.uint8)])
