"""The torch tile cascade (the device runtime's path) against the NumPy reference, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_committee.cascade import tiles as T  # noqa: E402
from edge_committee.cascade import tiles_torch as TT  # noqa: E402


def _members(seed: int):
    torch.manual_seed(seed)
    small = torch.nn.Sequential(torch.nn.AvgPool2d(2), torch.nn.Conv2d(1, 4, 3, padding=1))
    large = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3, padding=2,
                                                                                                    dilation=2))
    for m in (small, large):
        m.eval()
    return small, large


@pytest.mark.parametrize("margin, confidence", [(0, "mean_max_prob"), (3, "mean_max_prob"), (2, "p10_max_prob")])
def test_torch_path_equals_the_reference(margin, confidence):
    torch.set_num_threads(1)
    small, large = _members(margin)
    grid = T.TileGrid((8, 8), margin)
    x = torch.randn(3, 1, 16, 32)
    with torch.no_grad():
        conf0 = T.TILE_CONFIDENCE[confidence](grid.split(T.dense_softmax(T.resize_logits(small(x).numpy(), (16, 32)))))
    t = float(np.median(conf0))
    got = TT.run_tile_cascade_torch(x, [small, large], grid, [t], confidence)
    xn = x.numpy()
    with torch.no_grad():
        ref = T.run_tile_cascade(small(x).numpy(), [lambda idx: large(torch.from_numpy(grid.windows(xn, idx))).numpy()],
                                 grid, [t], confidence, frame=(16, 32))
    near = np.abs(conf0 - t) < 1e-6  # float32 sums may differ in the last bits right at the threshold
    stage = got.tile_exit_stage.numpy().ravel()
    assert (stage == ref.tile_exit_stage.ravel())[~near].all()
    assert 0 < (stage == 1).sum() < stage.size and got.tiles_run == [int((stage == 1).sum())]
    same_tiles = ~near.reshape(3, -1)
    labels_tiles = grid.split(got.labels.numpy()[:, None]) == grid.split(ref.labels[:, None])
    assert labels_tiles.reshape(3, 8, -1).all(axis=2)[same_tiles].all()
    np.testing.assert_allclose(got.tile_confidence.numpy(), ref.tile_confidence, atol=1e-5)


def test_windows_equal_the_reference_windows():
    grid = T.TileGrid((4, 4), 2)
    x = np.random.default_rng(0).random((2, 3, 8, 12)).astype(np.float32)
    idx = np.array([0, 5, 9, 11])
    np.testing.assert_array_equal(TT.windows(torch.from_numpy(x), grid, torch.from_numpy(idx)).numpy(),
                                  grid.windows(x, idx))
