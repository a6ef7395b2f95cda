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
    np.testing.assert_allclose(gray, 0.299, atol=1e-6)  # ITU-R 601 luma of red
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
    with pytest.raises(ValueError, match=r"\(N, H, W, 1\|3\)"):
        Preprocessing(size=(4, 4))(np.zeros((2, 4, 4, 5), np.uint8))
