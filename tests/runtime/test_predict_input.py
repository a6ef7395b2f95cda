"""predict's input checks: every malformed batch is one EdgeCommitteeError (findings P3 and P5)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.errors import EdgeCommitteeError
from edge_committee.runtime.cascade import _as_batch


@pytest.mark.parametrize("channels", [2, 4])
def test_a_list_with_2_or_4_channel_images_is_refused(channels):
    with pytest.raises(EdgeCommitteeError, match=r"image 1: expected uint8 \(H, W\), \(H, W, 1\) or \(H, W, 3\)"):
        _as_batch([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, channels), np.uint8)])


@pytest.mark.parametrize("shape", [(1, 0, 28), (2, 28, 0, 3)])
def test_an_empty_image_in_an_array_is_refused(shape):
    with pytest.raises(EdgeCommitteeError, match="height and width must be > 0"):
        _as_batch(np.zeros(shape, np.uint8))


def test_an_empty_image_in_a_list_is_refused():
    with pytest.raises(EdgeCommitteeError, match="image 0: empty image"):
        _as_batch([np.zeros((0, 5), np.uint8)])


def test_an_empty_batch_is_still_fine():
    assert _as_batch(np.zeros((0, 28, 28), np.uint8)).shape == (0, 28, 28, 1)
    assert _as_batch([]) == []
