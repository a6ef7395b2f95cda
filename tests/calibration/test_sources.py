"""Calibration readers: folder, .npy/.npz, video frames, IDX split; record; atomic writes."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from edge_committee.calibration import (
    CalibrationConfig,
    CalibrationRecord,
    load_calibration,
    read_video_frames,
)
from edge_committee.calibration._atomic import atomic_path, write_json_atomic
from edge_committee.errors import EdgeCommitteeError, SpecError
from edge_committee.spec.preprocess import Preprocessing

FMNIST = "/usr/share/datasets/fashion-mnist"


def _cfg(source, base, **kw):
    return CalibrationConfig.from_dict({"source": source, **kw}, base)


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture()
def image_folder(tmp_path):
    root = tmp_path / "calib"
    rng = np.random.default_rng(0)
    for cls, n in (("cat", 6), ("dog", 3), ("eel", 3)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    return root


def test_folder_is_stratified_hashed_and_preprocessed(image_folder, tmp_path):
    sample = load_calibration(_cfg({"kind": "folder", "path": "calib"}, tmp_path, count=4, seed=2))
    assert sample.images.shape == (4, 12, 10, 3)
    assert np.bincount(sample.labels).tolist() == [2, 1, 1]  # 6/3/3 -> 2/1/1
    rec = sample.record
    assert rec.count == 4 and rec.total == 12 and rec.stratified and rec.indices is None
    for f in rec.files:
        assert f["sha256"] == _sha(f["path"])
    pp = Preprocessing(size=(8, 8), color="gray", mean=(0.5,), std=(0.5,))
    x = sample.preprocess(pp, batch_size=3)
    assert x.shape == (4, 1, 8, 8) and x.dtype == np.float32
    again = load_calibration(_cfg({"kind": "folder", "path": "calib"}, tmp_path, count=4, seed=2))
    assert again.record == rec and np.array_equal(again.images, sample.images)


def test_corrupt_image_is_named(image_folder, tmp_path):
    bad = image_folder / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(EdgeCommitteeError, match="broken.png"):
        load_calibration(_cfg({"kind": "folder", "path": str(image_folder)}, tmp_path, count=None))


def test_npy_and_npz_sources(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (50, 6, 6), dtype=np.uint8)
    y = np.repeat(np.arange(5), 10)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "xy.npz", images=x, labels=y)
    s = load_calibration(_cfg({"kind": "array", "path": "x.npy"}, tmp_path, count=8, seed=0))
    assert s.images.shape == (8, 6, 6, 1) and s.labels is None and not s.record.stratified
    assert np.array_equal(s.images[..., 0], x[list(s.record.indices)])
    assert s.record.files[0]["sha256"] == _sha(tmp_path / "x.npy")
    src = {"kind": "array", "path": "xy.npz", "images_key": "images", "labels_key": "labels"}
    s = load_calibration(_cfg(src, tmp_path, count=10, seed=0))
    assert np.bincount(s.labels).tolist() == [2] * 5 and s.record.stratified


@pytest.mark.parametrize("content", [b"garbage", b"PK\x03\x04 truncated zip"])
def test_corrupt_array_is_named(tmp_path, content):
    for name in ("bad.npy", "bad.npz"):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(EdgeCommitteeError, match=name):
            load_calibration(_cfg({"kind": "array", "path": name}, tmp_path))
    with pytest.raises(EdgeCommitteeError, match="missing.npy"):
        load_calibration(_cfg({"kind": "array", "path": "missing.npy"}, tmp_path))


def test_float_array_is_refused_with_the_reason(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((4, 5, 5), np.float32))
    with pytest.raises(EdgeCommitteeError, match="uint8"):
        load_calibration(_cfg({"kind": "array", "path": "f.npy"}, tmp_path))


def _write_idx(path, arr: np.ndarray) -> None:
    code = {np.dtype(np.uint8): 0x08}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def test_idx_split_source(tmp_path):
    rng = np.random.default_rng(2)
    _write_idx(tmp_path / "img.gz", rng.integers(0, 256, (40, 5, 5), dtype=np.uint8))
    _write_idx(tmp_path / "lab.gz", np.repeat(np.arange(4), 10).astype(np.uint8))
    src = {"kind": "split", "format": "idx", "images": "img.gz", "labels": "lab.gz", "start": 0, "stop": 20}
    s = load_calibration(_cfg(src, tmp_path, count=6, seed=9))
    assert s.record.total == 20 and len(s) == 6 and max(s.record.indices) < 20
    assert sorted(s.labels.tolist()) == [0, 0, 0, 1, 1, 1]  # the first 20 are classes 0 and 1
    assert [f["sha256"] for f in s.record.files] == [_sha(tmp_path / "img.gz"), _sha(tmp_path / "lab.gz")]
    d = s.record.to_dict()
    assert d["source"]["stop"] == 20 and d["indices"] == list(s.record.indices)


@pytest.mark.skipif(not __import__("os").path.isdir(FMNIST), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_split_is_stratified():
    src = {"kind": "split", "format": "idx", "images": f"{FMNIST}/t10k-images-idx3-ubyte.gz",
           "labels": f"{FMNIST}/t10k-labels-idx1-ubyte.gz"}  # fmt: skip
    s = load_calibration(CalibrationConfig(src, count=200, seed=0))
    assert s.images.shape == (200, 28, 28, 1)
    assert np.bincount(s.labels).tolist() == [20] * 10


def _make_video(path, n=24, size=(32, 24)):
    cv2 = pytest.importorskip("cv2")
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    if not w.isOpened():
        pytest.skip("OpenCV cannot write MJPG video here")
    for i in range(n):  # frame i: red = 10 * i (BGR order on the OpenCV side)
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[..., 2] = 10 * i
        frame[..., 1] = 100
        w.write(frame)
    w.release()


def test_video_frames_are_selected_and_rgb(tmp_path):
    _make_video(tmp_path / "cam.avi")
    s = load_calibration(_cfg({"kind": "video", "path": "cam.avi"}, tmp_path, count=5, seed=4))
    assert s.images.shape == (5, 24, 32, 3) and s.images.dtype == np.uint8
    assert s.record.total == 24 and len(s.record.indices) == 5
    red = s.images[..., 0].mean(axis=(1, 2))
    assert np.allclose(red, 10 * np.array(s.record.indices), atol=6)  # RGB: red first
    assert np.allclose(s.images[..., 1].mean(), 100, atol=6)
    assert s.record.files[0]["sha256"] == _sha(tmp_path / "cam.avi")
    frames = read_video_frames(tmp_path / "cam.avi", [0, 23])
    assert frames.shape == (2, 24, 32, 3)


def test_corrupt_or_short_video_is_named(tmp_path):
    pytest.importorskip("cv2")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    with pytest.raises(EdgeCommitteeError, match="bad.mp4"):
        load_calibration(_cfg({"kind": "video", "path": "bad.mp4"}, tmp_path))
    _make_video(tmp_path / "short.avi", n=3)
    with pytest.raises(EdgeCommitteeError, match="short.avi.*frame 3"):
        read_video_frames(tmp_path / "short.avi", [1, 5])


def test_record_json_round_trip_and_digest(tmp_path, image_folder):
    rec = load_calibration(_cfg({"kind": "folder", "path": "calib"}, tmp_path, count=3)).record
    rec = rec.with_method("entropy")
    path = rec.save(tmp_path / "out" / "calibration.json")
    assert CalibrationRecord.load(path) == rec
    assert json.loads(path.read_text())["method"] == "entropy"
    assert rec.digest() == CalibrationRecord.from_dict(json.loads(rec.to_json())).digest()
    assert rec.digest() != rec.with_method("minmax").digest()
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(EdgeCommitteeError, match="junk.json"):
        CalibrationRecord.load(tmp_path / "junk.json")


def test_atomic_writes_leave_nothing_half_written(tmp_path):
    target = tmp_path / "r.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "n.json", {"a": object()})
    assert not (tmp_path / "n.json").exists()


def test_config_validation(tmp_path):
    with pytest.raises(SpecError, match="camera"):
        CalibrationConfig.from_dict({"source": {"kind": "camera"}})
    with pytest.raises(SpecError, match="count"):
        CalibrationConfig.from_dict({"source": {"kind": "folder", "path": "x"}, "count": 0})
    with pytest.raises(SpecError, match="method"):
        CalibrationConfig.from_dict({"source": {"kind": "folder", "path": "x"}, "method": "kl"})
    cfg = CalibrationConfig.from_dict({"source": {"kind": "folder", "path": "x"}})
    assert cfg.count == 512 and cfg.seed == 0 and cfg.to_dict()["stratify"] is True
    with pytest.raises(SpecError, match="path"):
        load_calibration(CalibrationConfig({"kind": "folder"}))
