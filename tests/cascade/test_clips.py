"""Clip cascades (video): per-member views of one clip, and the cascade on survivors only."""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.cascade.clips import ClipView, clip_input, clip_macs, run_clip_cascade
from edge_committee.cascade.reference import run_cascade
from edge_committee.spec.preprocess import Preprocessing


def test_views_are_centred_strided_and_clamped():
    assert ClipView(4, 4).indices(16).tolist() == [1, 5, 9, 13]
    assert ClipView(16, 1).indices(16).tolist() == list(range(16))
    assert ClipView(3, 2).indices(9).tolist() == [2, 4, 6]
    assert ClipView(4, 4).indices(6).tolist() == [0, 0, 4, 5]  # span 13 > 6 frames: -4, 0, 4, 8 clamped
    with pytest.raises(ValueError, match="frames >= 1"):
        ClipView(0)


def test_clip_input_takes_the_views_frames_each_preprocessed():
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (2, 8, 12, 12, 1), dtype=np.uint8)
    pp = Preprocessing.from_dict({"size": [6, 6], "color": "gray", "scale": 1 / 255, "offset": 0.0})
    x = clip_input(clips, ClipView(2, 4), pp)
    assert x.shape == (2, 1, 2, 6, 6)
    np.testing.assert_array_equal(x[1, :, 1], pp(clips[1, 5][None])[0])  # view (2, 4) of 8 frames: 1, 5


def test_clip_cascade_equals_the_reference_on_precomputed_logits():
    rng = np.random.default_rng(1)
    n, c = 40, 5
    clips = rng.integers(0, 256, (n, 8, 8, 8, 1), dtype=np.uint8)
    pp = Preprocessing.from_dict({"size": [4, 4], "color": "gray", "scale": 1 / 255, "offset": 0.0})
    w_small, w_large = rng.normal(0, 4, (2 * 16, c)), rng.normal(0, 8, (8 * 16, c))
    small = lambda x: x.reshape(len(x), -1) @ w_small  # noqa: E731 - members are plain functions of their view
    large = lambda x: x.reshape(len(x), -1) @ w_large  # noqa: E731
    views = [ClipView(2, 4), ClipView(8, 1)]
    seen = []

    def large_logged(x):
        seen.append(len(x))
        return large(x)

    got = run_clip_cascade(clips, [small, large_logged], views, [pp, pp], [0.8])
    logits = [small(clip_input(clips, views[0], pp)), large(clip_input(clips, views[1], pp))]
    ref = run_cascade(logits, [0.8])
    np.testing.assert_array_equal(got.label, ref.label)
    np.testing.assert_array_equal(got.exit_stage, ref.exit_stage)
    np.testing.assert_allclose(got.probs, ref.probs, atol=1e-6)
    assert seen == [int((ref.exit_stage == 1).sum())] and 0 < seen[0] < n  # the large member saw survivors only
    assert clip_macs([10.0, 100.0], got.exit_stage) == pytest.approx(10 + 100 * seen[0] / n)
