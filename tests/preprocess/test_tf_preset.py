"""The ``tf`` preset against a reference written from TensorFlow's documented formulas.

TensorFlow is not installed here; the reference below follows ``tf.image.central_crop``
(``start = int((n - n * fraction) / 2)`` in float64, ``size = n - 2 * start``) and
``tf.image.resize`` (TF 2, ``antialias=False``): half-pixel centres, ``in = (out + 0.5) * scale - 0.5``
in float32, ``lower = max(floor(in), 0)``, ``upper = min(ceil(in), n - 1)``, ``lerp = in - floor(in)``,
top/bottom interpolated first along x, then along y; nearest reads ``min(floor((out + 0.5) * scale), n - 1)``
(float32).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_committee.errors import SpecError
from edge_committee.spec.preprocess import Preprocessing


def _central_crop(im: np.ndarray, fraction: float) -> np.ndarray:
    if fraction == 1.0:
        return im
    h, w = im.shape[:2]
    top, left = int((float(h) - float(h) * fraction) / 2), int((float(w) - float(w) * fraction) / 2)
    return im[top:h - top, left:w - left]


def _bilinear_weights(n_in: int, n_out: int):
    scale = np.float32(n_in) / np.float32(n_out)
    src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    low = np.floor(src)
    lower = np.maximum(low.astype(np.int64), 0)
    upper = np.minimum(np.ceil(src).astype(np.int64), n_in - 1)
    return lower, upper, (src - low).astype(np.float32)


def _tf_resize(im: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    x = im.astype(np.float32)
    h, w = x.shape[:2]
    if method == "nearest":
        half = np.float32(0.5)  # HalfPixelScalerForNN: (float(x) + 0.5f) * scale, in float32
        ys = np.minimum(np.floor((np.arange(size[0], dtype=np.float32) + half) * (np.float32(h) / np.float32(size[0]))), h - 1)
        xs = np.minimum(np.floor((np.arange(size[1], dtype=np.float32) + half) * (np.float32(w) / np.float32(size[1]))), w - 1)
        return x[ys.astype(int)][:, xs.astype(int)]
    yl, yu, yf = _bilinear_weights(h, size[0])
    xl, xu, xf = _bilinear_weights(w, size[1])
    top_left, top_right = x[yl][:, xl], x[yl][:, xu]
    bottom_left, bottom_right = x[yu][:, xl], x[yu][:, xu]
    xf = xf[None, :, None]
    top = top_left + (top_right - top_left) * xf
    bottom = bottom_left + (bottom_right - bottom_left) * xf
    return top + (bottom - top) * yf[:, None, None]


@settings(max_examples=40, deadline=None)
@given(h=st.integers(2, 60), w=st.integers(2, 60), oh=st.integers(1, 50), ow=st.integers(1, 50),
       fraction=st.sampled_from([1.0, 0.875, 0.9, 0.5, 0.33]), method=st.sampled_from(["bilinear", "nearest"]),
       seed=st.integers(0, 2**31))
def test_tf_preset_matches_the_documented_formulas(h, w, oh, ow, fraction, method, seed):
    im = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    crop = _central_crop(im, fraction)
    if 0 in crop.shape[:2]:
        return
    pp = Preprocessing.from_dict({"size": [oh, ow], "tf": {"central_fraction": fraction, "method": method},
                                  "scale": 1.0, "offset": 0.0, "layout": "NHWC"})
    ours = pp(im[None])[0]
    ref = _tf_resize(crop, (oh, ow), method)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-3)


def test_tf_preset_differs_from_the_pil_centre_crop():
    """The TF order (crop, then resize without antialias) is another result than timm's: the preset matters."""
    im = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    tf = Preprocessing.from_dict({"size": [32, 32], "tf": {"central_fraction": 0.875}})
    timm = Preprocessing.from_dict({"size": [32, 32], "resize": "center_crop", "crop_pct": 0.875})
    assert np.abs(tf(im[None]) - timm(im[None])).max() > 0.05


def test_tf_preset_errors_are_one_line():
    with pytest.raises(SpecError, match="unknown key 'fraction'"):
        Preprocessing.from_dict({"size": [8, 8], "tf": {"fraction": 0.9}})
    with pytest.raises(SpecError, match="contradicts the tf preset"):
        Preprocessing.from_dict({"size": [8, 8], "tf": {"central_fraction": 0.9}, "resize_impl": "pil"})
    with pytest.raises(SpecError, match="not available with resize_impl: tf"):
        Preprocessing.from_dict({"size": [8, 8], "tf": {"method": "bicubic"}})
