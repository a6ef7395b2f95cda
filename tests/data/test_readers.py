"""Data readers: IDX, npy/npz and folders; corrupt inputs are named."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_committee.data import read_idx, read_split
from edge_committee.errors import EdgeCommitteeError

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_roundtrip_and_slicing(tmp_path: Path):
    x = np.random.default_rng(0).integers(0, 256, (10, 5, 4), dtype=np.uint8)
    y = np.arange(10, dtype=np.uint8) % 3
    write_idx(tmp_path / "x.gz", x)
    write_idx(tmp_path / "y.gz", y)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), x)
    s = read_split({"format": "idx", "images": "x.gz", "labels": "y.gz", "start": 6}, tmp_path)
    assert s.images.shape == (4, 5, 4, 1)
    np.testing.assert_array_equal(s.labels, y[6:])


def test_truncated_idx_is_named(tmp_path: Path):
    p = tmp_path / "bad.gz"
    with gzip.open(p, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + b"\x00" * 50)
    with pytest.raises(EdgeCommitteeError, match="bad.gz: truncated"):
        read_idx(p)


def test_folder_with_a_corrupt_image(tmp_path: Path):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / c / "a.png")
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(EdgeCommitteeError, match="broken.png"):
        read_split({"format": "folder", "path": "."}, tmp_path, ["cat", "dog"])


def test_folder_labels_from_subfolders(tmp_path: Path):
    for c in ("dog", "cat"):
        (tmp_path / c).mkdir()
        Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / c / "x.png")
    s = read_split({"format": "folder", "path": "."}, tmp_path, ["cat", "dog"])
    assert s.labels.tolist() == [0, 1] and s.images.shape == (2, 4, 4, 1)


def test_npz_errors(tmp_path: Path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4, 4), np.float32), y=np.zeros(3))
    with pytest.raises(EdgeCommitteeError, match="must be uint8"):
        read_split({"format": "npz", "path": "d.npz"}, tmp_path)
    np.savez(tmp_path / "e.npz", x=np.zeros((3, 4, 4), np.uint8), y=np.zeros(2))
    with pytest.raises(EdgeCommitteeError, match="3 images but 2 labels"):
        read_split({"format": "npz", "path": "e.npz"}, tmp_path)


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_debian_fashion_mnist():
    s = read_split({"format": "idx", "images": str(FMNIST / "t10k-images-idx3-ubyte.gz"),
                    "labels": str(FMNIST / "t10k-labels-idx1-ubyte.gz")}, Path("."))
    assert s.images.shape == (10000, 28, 28, 1)
    assert np.bincount(s.labels).tolist() == [1000] * 10
