"""Data readers: IDX, npy/npz and folders; corrupt inputs are named."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_committee.data import read_idx, read_image, read_split
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
    s = read_split({"format": "folder", "path": "."}, tmp_path, ["cat", "dog"])  # not decoded yet
    with pytest.raises(EdgeCommitteeError, match="broken.png"):
        s.images[0:3]


def test_folder_labels_from_subfolders(tmp_path: Path):
    for c in ("dog", "cat"):
        (tmp_path / c).mkdir()
        Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / c / "x.png")
    s = read_split({"format": "folder", "path": "."}, tmp_path, ["cat", "dog"])
    assert s.labels.tolist() == [0, 1] and s.images[0:2].shape == (2, 4, 4, 1)


def test_npz_errors(tmp_path: Path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4, 4), np.float32), y=np.zeros(3))
    with pytest.raises(EdgeCommitteeError, match="must be uint8"):
        read_split({"format": "npz", "path": "d.npz"}, tmp_path)
    np.savez(tmp_path / "e.npz", x=np.zeros((3, 4, 4), np.uint8), y=np.zeros(2, np.int64))
    with pytest.raises(EdgeCommitteeError, match="3 images but 2 labels"):
        read_split({"format": "npz", "path": "e.npz"}, tmp_path)


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_debian_fashion_mnist():
    s = read_split({"format": "idx", "images": str(FMNIST / "t10k-images-idx3-ubyte.gz"),
                    "labels": str(FMNIST / "t10k-labels-idx1-ubyte.gz")}, Path("."))
    assert s.images.shape == (10000, 28, 28, 1)
    assert np.bincount(s.labels).tolist() == [1000] * 10


# ------------------------------------------------------------------------- reliability findings
def test_float_labels_are_refused(tmp_path: Path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4, 4), np.uint8), y=np.array([0.7, 1.7, 2.7]))
    with pytest.raises(EdgeCommitteeError, match="integer class indices"):
        read_split({"format": "npz", "path": "d.npz"}, tmp_path)


def test_idx_header_product_does_not_wrap(tmp_path: Path):
    p = tmp_path / "huge.idx"
    p.write_bytes(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (2**31, 2**31, 4)))
    with pytest.raises(EdgeCommitteeError, match=f"expected {2**64}"):
        read_idx(p)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path):
    v = np.array([[129, 6426], [65535, 0]], np.uint16)
    Image.fromarray(v).save(tmp_path / "d16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "d16.png")[..., 0], v >> 8)


def test_exif_orientation_is_applied(tmp_path: Path):
    im = np.zeros((20, 40, 3), np.uint8)
    im[:, :5] = 255  # a bright left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(im).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "phone.jpg")
    assert out.shape == (40, 20, 3)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # the left edge is now on top


@pytest.mark.parametrize("mode", ["RGBA", "CMYK", "P", "LA", "1", "YCbCr"])
def test_other_modes_convert_as_pil_does(tmp_path: Path, mode: str):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8))
    im = rgb.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "YCbCr") else "x.png")
    im.save(path)
    got = read_image(path)
    with Image.open(path) as ref:
        want = np.asarray(ref.convert("L" if mode in ("LA", "1") else "RGB"))
    np.testing.assert_array_equal(got.squeeze(-1) if want.ndim == 2 else got, want)


def test_empty_image_is_refused(tmp_path: Path):
    np.save(tmp_path / "e.npy", np.zeros((2, 0, 8), np.uint8))
    s = read_split({"format": "npy", "images": "e.npy"}, tmp_path)
    from edge_committee.spec.preprocess import Preprocessing

    with pytest.raises(EdgeCommitteeError, match="zero height"):
        Preprocessing(size=(4, 4))(s.images)


def test_folder_split_streams_and_hashes_without_decoding(tmp_path: Path, monkeypatch):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((5, 6, 3), i * 40, np.uint8)).save(tmp_path / c / f"{i}.png")
    s = read_split({"format": "folder", "path": ".", "start": 1}, tmp_path, ["a", "b"])
    import edge_committee.data.readers as readers

    decoded = []
    real = readers.read_image
    monkeypatch.setattr(readers, "read_image", lambda p: decoded.append(p) or real(p))
    h1 = s.content_hash()
    assert len(s) == 5 and decoded == []  # hashing reads bytes, never decodes
    assert s.images[1:3].shape == (2, 5, 6, 3) and len(decoded) == 2
    Image.fromarray(np.full((5, 6, 3), 99, np.uint8)).save(tmp_path / "b" / "2.png")
    assert read_split({"format": "folder", "path": ".", "start": 1}, tmp_path, ["a", "b"]).content_hash() != h1
