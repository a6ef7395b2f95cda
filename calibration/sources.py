"""Calibration sources: a folder of images, an .npy/.npz array, the frames of a video, a split.

Each reader selects ``count`` samples reproducibly from ``seed`` (stratified by label when the
source has labels: the sub-folder names of a folder, the ``labels_key`` array of an .npz, the
labels of a split), reads only what it selected where the format allows, and returns the raw
uint8 images with a :class:`CalibrationRecord`. The member's own
:class:`~edge_committee.spec.preprocess.Preprocessing` is applied afterwards, per member
(:meth:`CalibrationSample.preprocess`), so one sample serves members of different input sizes.

Spec form (``calibration:`` mapping; paths relative to the spec's folder)::

    source: {kind: folder, path: calib_images/}
    source: {kind: array, path: calib.npz, images_key: x, labels_key: y}   # or an .npy
    source: {kind: video, path: camera.mp4}
    source: {kind: split, format: idx, images: ..., labels: ..., start: 0, stop: 50000}
    count: 512      # samples (null: all)
    seed: 0
    stratify: true  # when labels exist
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge_committee._util import progress
from edge_committee.calibration.record import CalibrationRecord, file_entry
from edge_committee.calibration.select import select_indices
from edge_committee.data.readers import as_nhwc_uint8, list_image_files, read_image, read_split
from edge_committee.errors import EdgeCommitteeError, SpecError

KINDS = ("folder", "array", "video", "split")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """Which source calibrates and how many of its samples (see the module docstring).

    ``source`` holds ``kind`` and the kind's keys; ``count`` None means every sample.
    """

    source: Mapping[str, Any]
    count: int | None = 512
    seed: int = 0
    stratify: bool = True
    base_dir: str = "."

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], base_dir: str | os.PathLike = ".", where: str = "calibration"
    ) -> "CalibrationConfig":
        if not isinstance(d, Mapping):
            raise SpecError(f"{where}: expected a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - {"source", "count", "seed", "stratify"})
        if unknown:
            raise SpecError(
                f"{where}: unknown key {unknown[0]!r}; allowed: source, count, seed, stratify"
            )
        src = d.get("source")
        if not isinstance(src, Mapping) or src.get("kind") not in KINDS:
            kind = src.get("kind") if isinstance(src, Mapping) else src
            raise SpecError(
                f"{where}.source.kind: {kind!r} is not allowed; use one of {', '.join(KINDS)}"
            )
        count = d.get("count", 512)
        if count is not None and (not isinstance(count, int) or count <= 0):
            raise SpecError(f"{where}.count: {count!r} must be a positive integer or null")
        seed = d.get("seed", 0)
        if not isinstance(seed, int):
            raise SpecError(f"{where}.seed: {seed!r} must be an integer")
        return cls(dict(src), count, seed, bool(d.get("stratify", True)), str(base_dir))

    def to_dict(self) -> dict:
        return {
            "source": dict(self.source),
            "count": self.count,
            "seed": self.seed,
            "stratify": self.stratify,
        }


@dataclasses.dataclass
class CalibrationSample:
    """The selected raw images (uint8 (N, H, W, C) array, or a list when sizes differ)."""

    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray | None
    record: CalibrationRecord

    def __len__(self) -> int:
        return len(self.images)

    def preprocess(self, preprocessing, batch_size: int = 256) -> np.ndarray:
        """The member's float32 inputs for these images (its own ``Preprocessing``)."""
        parts = [
            preprocessing(self.images[i : i + batch_size])
            for i in range(0, len(self.images), batch_size)
        ]
        return np.concatenate(parts, axis=0) if parts else preprocessing(self.images[:0])


def load_calibration(config: CalibrationConfig) -> CalibrationSample:
    """Read and select the calibration samples that ``config`` describes."""
    src = dict(config.source)
    kind = src.get("kind")
    readers = {"folder": _folder, "array": _array, "video": _video, "split": _split}
    if kind not in readers:
        raise SpecError(f"calibration.source.kind: {kind!r} is not allowed; use one of {KINDS}")
    return readers[kind](src, config)


# ---------------------------------------------------------------------------------- readers
def _path(src: Mapping[str, Any], config: CalibrationConfig) -> Path:
    if "path" not in src:
        raise SpecError(f"calibration.source: missing key 'path' for kind {src['kind']!r}")
    p = Path(os.path.expanduser(str(src["path"])))
    return p if p.is_absolute() else Path(config.base_dir) / p


def _record(src, files, indices, config, labels, total) -> CalibrationRecord:
    return CalibrationRecord(
        source=dict(src),
        files=tuple(files),
        indices=None if indices is None else tuple(int(i) for i in indices),
        count=len(files) if indices is None else len(indices),
        seed=config.seed,
        stratified=bool(config.stratify and labels is not None),
        total=total,
    )


def _select(n: int, config: CalibrationConfig, labels: np.ndarray | None) -> np.ndarray:
    return select_indices(n, config.count, config.seed, labels if config.stratify else None)


def _folder(src: Mapping[str, Any], config: CalibrationConfig) -> CalibrationSample:
    folder = _path(src, config)
    files = list_image_files(folder)
    labels = _folder_labels(folder, files)
    idx = _select(len(files), config, labels)
    chosen = [files[i] for i in idx]
    images = [read_image(p) for p in progress(chosen, desc="calibration images")]
    if len({im.shape for im in images}) == 1:
        images = np.stack(images)
    sel_labels = None if labels is None else labels[idx]
    record = _record(src, [file_entry(p) for p in chosen], None, config, labels, len(files))
    return CalibrationSample(images, sel_labels, record)


def _folder_labels(folder: Path, files: Sequence[Path]) -> np.ndarray | None:
    """Sub-folder names as labels when every file lies in one (as the folder split reader)."""
    if not all(p.parent != folder for p in files):
        return None
    names = [p.relative_to(folder).parts[0] for p in files]
    index = {n: i for i, n in enumerate(sorted(set(names)))}
    return np.array([index[n] for n in names], np.int64)


def _array(src: Mapping[str, Any], config: CalibrationConfig) -> CalibrationSample:
    path = _path(src, config)
    where = f"calibration array {path}"
    labels = None
    if not path.is_file():
        raise EdgeCommitteeError(f"{where}: file not found")
    xk, yk = src.get("images_key", "x"), src.get("labels_key", "y")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                images = z[xk] if xk in names else None
                labels = z[yk].reshape(-1).astype(np.int64) if yk in names else None
        else:  # memory-mapped: only the selected rows are read
            images = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # ValueError, OSError, zipfile.BadZipFile, EOFError ...
        raise EdgeCommitteeError(
            f"{where}: cannot read it ({type(exc).__name__}: {exc}); is it a valid .npy/.npz?"
        ) from None
    if images is None:
        raise EdgeCommitteeError(f"{where} has no array {xk!r} (has {', '.join(names)}); set images_key")
    images = as_nhwc_uint8(images, where)
    if labels is not None and len(labels) != len(images):
        raise EdgeCommitteeError(f"{where}: {len(images)} images but {len(labels)} labels")
    idx = _select(len(images), config, labels)
    try:
        chosen = np.ascontiguousarray(images[idx])
    except (OSError, ValueError) as exc:
        raise EdgeCommitteeError(f"{where}: cannot read the selected rows ({exc})") from None
    record = _record(src, [file_entry(path)], idx, config, labels, len(images))
    return CalibrationSample(chosen, None if labels is None else labels[idx], record)


def _split(src: Mapping[str, Any], config: CalibrationConfig) -> CalibrationSample:
    cfg = {k: v for k, v in src.items() if k != "kind"}
    split = read_split(cfg, Path(config.base_dir), where="calibration.source")
    idx = _select(len(split), config, split.labels)
    if isinstance(split.images, np.ndarray):
        images = np.ascontiguousarray(split.images[idx])
    else:
        images = [split.images[i] for i in idx]
    labels = None if split.labels is None else split.labels[idx]
    record = _record(src, [file_entry(f) for f in split.files], idx, config, split.labels, len(split))
    return CalibrationSample(images, labels, record)


def _video(src: Mapping[str, Any], config: CalibrationConfig) -> CalibrationSample:
    path = _path(src, config)
    frames_total = count_video_frames(path)
    idx = _select(frames_total, config, None)
    frames = read_video_frames(path, idx)
    record = _record(src, [file_entry(path)], idx, config, None, frames_total)
    return CalibrationSample(frames, None, record)


# ------------------------------------------------------------------------------------ video
def _open_video(path: Path):
    from edge_committee._lazy import require

    cv2 = require("cv2")
    if not path.is_file():
        raise EdgeCommitteeError(f"calibration video not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise EdgeCommitteeError(
            f"cannot open video {path}: OpenCV has no decoder for it or the file is corrupt"
        )
    return cv2, cap


def count_video_frames(path: str | os.PathLike) -> int:
    """Frames in a video, counted by grabbing each (container frame counts can be wrong)."""
    _, cap = _open_video(Path(path))
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise EdgeCommitteeError(f"video {path} has no decodable frames; is it corrupt?")
    return n


def read_video_frames(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """The frames at ``indices`` (sorted, 0-based) as uint8 (N, H, W, 3) RGB."""
    cv2, cap = _open_video(Path(path))
    wanted = sorted(int(i) for i in indices)
    frames: list[np.ndarray] = []
    try:
        pos = 0
        for i in progress(wanted, desc="video frames"):
            while pos <= i:
                if not cap.grab():
                    raise EdgeCommitteeError(
                        f"video {path}: frame {pos} cannot be decoded (the file ends or is "
                        "corrupt there)"
                    )
                pos += 1
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                raise EdgeCommitteeError(f"video {path}: frame {i} cannot be decoded")
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if len({f.shape for f in frames}) != 1:
        raise EdgeCommitteeError(f"video {path}: frames change size; cannot stack them")
    return np.stack(frames)
