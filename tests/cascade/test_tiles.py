"""The tile cascade reference (segmentation): grid, resize, gate rule, batching, metric."""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.cascade import tiles as T


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_split_merge_round_trip_and_order():
    grid = T.TileGrid((2, 3))
    x = np.arange(2 * 1 * 4 * 6, dtype=np.float32).reshape(2, 1, 4, 6)
    tiles = grid.split(x)
    assert tiles.shape == (2 * 4, 1, 2, 3)
    np.testing.assert_array_equal(tiles[1, 0], x[0, 0, 0:2, 3:6])  # row-major: tile 1 is row 0, col 1
    np.testing.assert_array_equal(tiles[4 + 2, 0], x[1, 0, 2:4, 0:3])
    np.testing.assert_array_equal(grid.merge(tiles, (4, 6)), x)


def test_windows_are_reflect_padded_crops():
    grid = T.TileGrid((4, 4), margin=2)
    rng = np.random.default_rng(0)
    frames = rng.random((2, 3, 8, 12)).astype(np.float32)
    padded = np.pad(frames, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    idx = np.array([0, 5, 6 + 3])  # frame 0 tile 0, frame 0 tile 5 (row 1 col 2), frame 1 tile 3
    w = grid.windows(frames, idx)
    assert w.shape == (3, 3, 8, 8)
    np.testing.assert_array_equal(w[0], padded[0, :, 0:8, 0:8])
    np.testing.assert_array_equal(w[1], padded[0, :, 4:12, 8:16])
    np.testing.assert_array_equal(w[2], padded[1, :, 4:12, 0:8])
    np.testing.assert_array_equal(grid.centre(w)[1], frames[0, :, 4:8, 8:12])


def test_grid_refuses_a_tile_that_does_not_divide_the_frame():
    with pytest.raises(ValueError, match="does not divide the frame 10x12"):
        T.TileGrid((4, 4)).shape((10, 12))


def test_resize_logits_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).normal(size=(2, 3, 5, 7)).astype(np.float32)
    for size in ((20, 28), (9, 13), (5, 7), (3, 4)):
        want = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode="bilinear",
                                               align_corners=False).numpy()
        np.testing.assert_allclose(T.resize_logits(x, size), want, atol=1e-5)


def test_confidence_exactly_at_the_threshold_exits():
    # two classes, equal logits: every pixel's max probability is exactly 0.5
    grid = T.TileGrid((2, 2))
    x0 = np.zeros((1, 2, 2, 4), np.float32)
    calls = []

    def later(idx):
        calls.append(idx)
        return np.ones((len(idx), 2, 2, 2), np.float32)

    r = T.run_tile_cascade(x0, [later], grid, [0.5])
    assert calls == [] and (r.tile_exit_stage == 0).all() and (r.tile_confidence == 0.5).all()
    r = T.run_tile_cascade(x0, [later], grid, [np.nextafter(np.float32(0.5), np.float32(1))])
    assert len(calls) == 1 and (r.tile_exit_stage == 1).all()


def _brute_force(x0, x1_windows, grid, t, frame):
    """Per tile, written out: small's tile probabilities; deferred tiles average in the large's centre."""
    p0 = grid.split(_softmax(T.resize_logits(x0, frame)))
    labels, stages = [], []
    for i in range(len(p0)):
        conf = p0[i].max(axis=0).mean()
        if conf >= t:
            p, s = p0[i], 0
        else:
            p1 = _softmax(grid.centre(T.resize_logits(x1_windows[i:i + 1], grid.window)))[0]
            p, s = (p0[i] + p1) / 2, 1
        labels.append(p.argmax(axis=0)[None])
        stages.append(s)
    return grid.merge(np.stack(labels), frame)[:, 0], np.array(stages).reshape(len(x0), -1)


@pytest.mark.parametrize("margin", [0, 3])
def test_two_member_cascade_equals_the_per_tile_rule(margin):
    rng = np.random.default_rng(margin)
    grid, frame = T.TileGrid((6, 8), margin), (12, 24)
    n, c = 3, 5
    x0 = rng.normal(0, 2, (n, c, 6, 12)).astype(np.float32)  # stride-2 output, resized to the frame
    tiles = n * grid.count(frame)
    x1 = rng.normal(0, 2, (tiles, c, *grid.window)).astype(np.float32)
    t = float(np.median(T.mean_max_prob(grid.split(_softmax(T.resize_logits(x0, frame))))))
    seen = []

    def later(idx):
        seen.append(idx.copy())
        return x1[idx]

    r = T.run_tile_cascade(x0, [later], grid, [t], frame=frame)
    want_labels, want_stage = _brute_force(x0, x1, grid, t, frame)
    np.testing.assert_array_equal(r.labels, want_labels)
    np.testing.assert_array_equal(r.tile_exit_stage, want_stage)
    assert len(seen) == 1  # one batched call with exactly the deferred tiles, in order
    np.testing.assert_array_equal(seen[0], np.flatnonzero(want_stage.ravel() == 1))
    assert 0 < len(seen[0]) < tiles
    assert r.probs.shape == (n, c, *frame)
    np.testing.assert_allclose(r.probs.sum(axis=1), 1, atol=1e-5)
    macs = T.frame_macs(100.0, [10.0], r)
    assert macs == pytest.approx(100 + 10 * len(seen[0]) / n)


def test_three_members_each_stage_sees_only_survivors():
    rng = np.random.default_rng(3)
    grid, frame = T.TileGrid((4, 4)), (8, 16)
    x0 = rng.normal(0, 1, (2, 3, 8, 16)).astype(np.float32)
    x1 = rng.normal(0, 1, (16, 3, 4, 4)).astype(np.float32)
    x2 = rng.normal(0, 3, (16, 3, 4, 4)).astype(np.float32)
    seen = {}

    def member(k, x):
        return lambda i: (seen.__setitem__(k, i.copy()), x[i])[1]

    r = T.run_tile_cascade(x0, [member(1, x1), member(2, x2)], grid, [0.99, 0.5], frame=frame)
    assert 0 < len(seen[2]) < len(seen[1]) == 16  # nobody exits at 0.99; some, not all, at 0.5
    assert set(seen[2].tolist()) < set(seen[1].tolist())
    np.testing.assert_array_equal(np.flatnonzero(r.tile_exit_stage.ravel() == 2), seen[2])
    conf1 = r.tile_confidence.ravel()[r.tile_exit_stage.ravel() == 1]
    assert (conf1 >= 0.5).all()


def test_non_finite_tile_is_flagged_and_deferred():
    grid = T.TileGrid((2, 2))
    x0 = np.zeros((1, 2, 2, 4), np.float32)
    x0[0, 0, 0, 0] = 10.0  # tile 0 confident
    x0[0, :, 0, 0] = np.nan  # ... but non-finite: it must not exit at stage 0
    x0[0, 0, :, 2:] = 10.0  # tile 1 confident and finite
    x1 = np.zeros((2, 2, 2, 2), np.float32)
    x1[:, 1] = 5.0
    r = T.run_tile_cascade(x0, [lambda i: x1[: len(i)]], grid, [0.9])
    assert r.tile_exit_stage.tolist() == [[1, 0]] and r.tile_flags.tolist() == [[1, 0]]
    assert (r.labels[0, :, :2] == 1).all()  # only the large member counted for tile 0
    assert (r.labels[0, :, 2:] == 0).all()


def test_custom_tile_confidence_is_used():
    grid = T.TileGrid((2, 2))
    x0 = np.zeros((1, 2, 2, 4), np.float32)
    always_low = lambda p: np.zeros(len(p), np.float32)  # noqa: E731
    r = T.run_tile_cascade(x0, [lambda i: np.zeros((len(i), 2, 2, 2), np.float32)], grid, [0.1],
                           confidence=always_low)
    assert (r.tile_exit_stage == 1).all()
    with pytest.raises(ValueError, match="unknown tile confidence"):
        T.run_tile_cascade(x0, [], grid, [], confidence="nope")


def test_p10_is_a_low_percentile():
    p = np.zeros((1, 2, 10, 1), np.float32)
    p[0, 0, :, 0] = np.linspace(0.5, 1.0, 10)
    p[0, 1] = 1 - p[0, 0]
    assert T.p10_max_prob(p)[0] == pytest.approx(0.5)
    assert T.mean_max_prob(p)[0] == pytest.approx(0.75)


def test_miou_from_one_confusion_matrix():
    target = np.array([[0, 0, 1, 1], [2, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 2, -1, 0]])
    cm = T.confusion_matrix(pred, target, 3, ignore_index=255)
    assert cm.shape == (3, 4) and cm.sum() == 7 and cm[2, 3] == 1
    # class 0: inter 1, union 2; class 1: inter 2, union 3; class 2: inter 2, union 3 (the -1 pixel counts)
    assert T.miou_from_confusion(cm) == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert T.miou_from_confusion(cm[:, :3]) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)


def test_argmax_classes_equals_numpy_with_ties_to_the_lowest_class():
    rng = np.random.default_rng(5)
    p = rng.integers(0, 4, (3, 6, 5, 7)).astype(np.float32)  # many ties
    np.testing.assert_array_equal(T.argmax_classes(p), p.argmax(axis=1))
