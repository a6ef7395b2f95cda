"""Readers that turn a data source into raw uint8 images (+ optional labels).

Formats (the ``format`` key of a split in the spec):

- ``idx``: MNIST-style IDX files (``.gz`` or plain), ``images`` and optional ``labels``;
  the Debian package ``dataset-fashion-mnist`` ships them under
  ``/usr/share/datasets/fashion-mnist``.
- ``npy``: ``images`` an .npy array (N, H, W[, C]) uint8, optional ``labels`` an .npy array.
- ``npz``: ``path`` to an .npz with arrays ``images_key`` (default ``x``) and ``labels_key``
  (default ``y``; optional).
- ``folder``: ``path`` to a folder of images; with ``labeled: true`` (default when every file
  lies in a sub-folder) the sub-folder name is the label name. The images are *not* decoded
  when the split is read: :class:`ImageFiles` decodes each batch when it is sliced, so an
  evaluation streams through a folder of any size in flat memory.

Images are read with PIL as a viewer shows them: the EXIF orientation is applied; 16-bit
gray images (``I;16``, and ``I`` with values above 255) are scaled to 8 bits (``>> 8``, not
clipped); palette, CMYK, RGBA (alpha dropped), YCbCr... become RGB and ``1``/``LA`` become gray,
as PIL's ``convert`` does; floating-point (``F``) images are refused. Labels must be integers.

Every split may take ``start``/``stop`` to slice the samples (e.g. the last 10k of the
60k training images as a validation split). Corrupt or unreadable files raise
:class:`~edge_committee.errors.EdgeCommitteeError` naming the file.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from edge_committee.errors import EdgeCommitteeError, SpecError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff")
FORMATS = ("idx", "npy", "npz", "folder")


class ImageFiles(Sequence):
    """Image files decoded on access: ``files[i]`` is one (H, W, C) uint8 image, ``files[a:b]``
    a batch (a (N, H, W, C) array when the sizes agree, else a list); :meth:`select` keeps the
    selection lazy. Nothing is held in memory but the paths."""

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            images = [read_image(p) for p in self.paths[index]]
            if images and len({im.shape for im in images}) == 1:
                return np.stack(images)
            return images
        return read_image(self.paths[index])

    def __iter__(self) -> Iterator[np.ndarray]:
        return (read_image(p) for p in self.paths)

    def select(self, index: slice | Sequence[int]) -> "ImageFiles":
        """The same files, sliced or picked by indices, still undecoded."""
        if isinstance(index, slice):
            return ImageFiles(self.paths[index])
        return ImageFiles([self.paths[int(i)] for i in index])

    def content_hash(self, h: "hashlib._Hash") -> None:
        """Feed the file names and bytes (read in 1 MiB blocks) to ``h``."""
        for p in self.paths:
            h.update(f"{os.path.basename(p)}\0{os.path.getsize(p)}\0".encode())
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)


@dataclasses.dataclass
class RawSplit:
    """Raw images of one split. ``images``: uint8 (N, H, W, C) array, a list of (H, W, C)
    arrays when sizes differ, or :class:`ImageFiles` (a folder, decoded batch by batch).
    ``labels``: int64 (N,) or None. ``files``: the source files."""

    images: np.ndarray | list[np.ndarray] | ImageFiles
    labels: np.ndarray | None
    files: list[str]
    name: str = ""
    _hash: str | None = dataclasses.field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, start: int, stop: int) -> np.ndarray | list[np.ndarray]:
        return self.images[start:stop]

    def content_hash(self) -> str:
        """sha256 over the images and labels (the evaluation cache key), computed once.

        For a folder it covers the file names and bytes (read block by block, never decoded),
        so the key stays meaningful without holding the images."""
        if self._hash is not None:
            return self._hash
        h = hashlib.sha256()
        if isinstance(self.images, ImageFiles):
            h.update(f"files:{len(self.images)}".encode())
            self.images.content_hash(h)
        elif isinstance(self.images, np.ndarray):
            h.update(str(self.images.shape).encode())
            h.update(np.ascontiguousarray(self.images).tobytes())
        else:
            for im in self.images:
                h.update(str(im.shape).encode())
                h.update(np.ascontiguousarray(im).tobytes())
        if self.labels is not None:
            h.update(np.asarray(self.labels, np.int64).tobytes())
        self._hash = h.hexdigest()
        return self._hash


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a NumPy array."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise EdgeCommitteeError(f"IDX file not found: {path}") from None
    except (OSError, EOFError) as exc:
        raise EdgeCommitteeError(f"cannot read IDX file {path}: {exc}") from None
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in dtypes:
        raise EdgeCommitteeError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise EdgeCommitteeError(f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions)")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(dtypes[data[2]])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no int64 wrap-around
    body = data[4 + 4 * ndim :]
    if len(body) != expected:
        raise EdgeCommitteeError(
            f"{path}: truncated or corrupt IDX file ({len(body)} bytes of data, expected {expected})"
        )
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as uint8 (H, W, C) with C = 1 (gray) or 3 (RGB), as displayed.

    The EXIF orientation is applied; 16-bit gray is scaled to 8 bits; other modes convert as
    PIL's ``convert`` does (see the module docstring).
    """
    from edge_committee._lazy import require

    Image = require("PIL.Image")
    ImageOps = require("PIL.ImageOps")
    try:
        with Image.open(path) as im:
            im.load()
            arr = _to_uint8(ImageOps.exif_transpose(im), path)
    except FileNotFoundError:
        raise EdgeCommitteeError(f"image file not found: {path}") from None
    except EdgeCommitteeError:
        raise
    except Exception as exc:  # PIL raises many types for corrupt files
        raise EdgeCommitteeError(
            f"cannot read image {path}: {exc}; remove or replace the file"
        ) from None
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EdgeCommitteeError(f"image {path} has zero height or width; remove it")
    return arr[..., None] if arr.ndim == 2 else arr


def _to_uint8(im: Any, path: Any) -> np.ndarray:
    """A PIL image as a uint8 gray (H, W) or RGB (H, W, 3) array."""
    if im.mode in ("L", "RGB"):
        return np.asarray(im, dtype=np.uint8)
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16-bit gray (I;16*, or I holding 16-bit values): keep the top 8 bits, as a viewer
        # scales it; an I image whose values fit in 0..255 is already 8-bit
        v = np.asarray(im).astype(np.int64)
        if im.mode == "I" and v.size and v.min() >= 0 and v.max() <= 255:
            return v.astype(np.uint8)
        return (np.clip(v, 0, 65535) >> 8).astype(np.uint8)
    if im.mode == "F":
        raise EdgeCommitteeError(
            f"image {path} holds floating-point pixels (mode F), whose range is unknown; "
            "save it as an 8- or 16-bit image"
        )
    # palette (even a gray one), CMYK, RGBA, YCbCr, LAB... -> RGB; bilevel and LA -> gray
    gray = im.mode in ("1", "LA", "La")
    return np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)


def as_nhwc_uint8(images: np.ndarray, where: str) -> np.ndarray:
    """Check and reshape a raw image array to uint8 (N, H, W, C)."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise EdgeCommitteeError(
            f"{where}: images must have shape (N, H, W) or (N, H, W, 1|3); got {x.shape}"
        )
    if x.dtype != np.uint8:
        raise EdgeCommitteeError(
            f"{where}: images must be uint8 raw pixels (0..255); got dtype {x.dtype}"
        )
    return x


def _load_npy(path: Path, where: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise EdgeCommitteeError(f"{where}: file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise EdgeCommitteeError(f"{where}: cannot read {path}: {exc}") from None


def list_image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted for determinism."""
    if not folder.is_dir():
        raise EdgeCommitteeError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EdgeCommitteeError(
            f"no image files ({', '.join(IMAGE_SUFFIXES)}) found under {folder}"
        )
    return files


def read_folder(folder: Path, label_names: Sequence[str] | None, labeled: bool | None) -> RawSplit:
    """A folder split whose images are decoded batch by batch (:class:`ImageFiles`)."""
    files = list_image_files(folder)
    labels = None
    in_subdirs = all(p.parent != folder for p in files)
    if labeled or (labeled is None and in_subdirs and label_names):
        names = [p.relative_to(folder).parts[0] for p in files]
        if label_names is None:
            label_names = sorted(set(names))
        index = {n: i for i, n in enumerate(label_names)}
        bad = sorted(set(names) - set(index))
        if bad:
            raise EdgeCommitteeError(
                f"{folder}: sub-folder {bad[0]!r} is not one of the committee's labels "
                f"({', '.join(label_names[:5])}...); rename it or fix the labels"
            )
        labels = np.array([index[n] for n in names], np.int64)
    return RawSplit(ImageFiles(files), labels, [str(p) for p in files])


def read_split(
    cfg: Mapping[str, Any],
    base_dir: Path,
    label_names: Sequence[str] | None = None,
    where: str = "data",
) -> RawSplit:
    """Read one split described by a spec mapping (see the module docstring)."""
    fmt = cfg.get("format")
    if fmt not in FORMATS:
        raise SpecError(f"{where}.format: {fmt!r} is not allowed; use one of {', '.join(FORMATS)}")

    def path(key: str) -> Path:
        if key not in cfg:
            raise SpecError(f"{where}: missing key {key!r} for format {fmt!r}")
        p = Path(os.path.expanduser(str(cfg[key])))
        return p if p.is_absolute() else base_dir / p

    labels = None
    if fmt == "idx":
        images, files = read_idx(path("images")), [str(path("images"))]
        if "labels" in cfg:
            labels, files = read_idx(path("labels")).astype(np.int64), files + [str(path("labels"))]
        split = RawSplit(as_nhwc_uint8(images, where), labels, files)
    elif fmt == "npy":
        images, files = _load_npy(path("images"), where), [str(path("images"))]
        if "labels" in cfg:
            labels, files = _load_npy(path("labels"), where), files + [str(path("labels"))]
        split = RawSplit(as_nhwc_uint8(images, where), labels, files)
    elif fmt == "npz":
        p = path("path")
        images, labels = read_npz_arrays(p, cfg, where)
        split = RawSplit(as_nhwc_uint8(images, where), labels, [str(p)])
    else:
        split = read_folder(path("path"), label_names, cfg.get("labeled"))
    if split.labels is not None:
        split.labels = _integer_labels(split.labels, where)
        if len(split.labels) != len(split.images):
            raise EdgeCommitteeError(
                f"{where}: {len(split.images)} images but {len(split.labels)} labels"
            )
    start, stop = cfg.get("start"), cfg.get("stop")
    if start is not None or stop is not None:
        sl = slice(start, stop)
        split.images = split.images.select(sl) if isinstance(split.images, ImageFiles) else split.images[sl]
        split.labels = None if split.labels is None else split.labels[sl]
    if len(split) == 0:
        raise EdgeCommitteeError(f"{where}: the split is empty (check start/stop)")
    return split


def read_npz_arrays(p: Path, cfg: Mapping[str, Any], where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The images and labels (None when absent) of an ``npz`` split at ``p``, under the spec's keys
    ``images_key``/``labels_key`` (default ``x``/``y``); one-line errors name ``where`` and the file."""
    xk, yk = cfg.get("images_key", "x"), cfg.get("labels_key", "y")
    try:
        with np.load(p, allow_pickle=False) as z:
            if xk not in z:
                raise SpecError(f"{where}: {p} has no array {xk!r} (has {', '.join(z.files)})")
            return z[xk], (z[yk] if yk in z else None)
    except FileNotFoundError:
        raise EdgeCommitteeError(f"{where}: file not found: {p}") from None
    except (OSError, ValueError) as exc:
        raise EdgeCommitteeError(f"{where}: cannot read {p}: {exc}") from None


def slice_arrays(cfg: Mapping[str, Any], x: np.ndarray, y: np.ndarray | None,
                 where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A split's ``start``/``stop`` applied to its arrays; an empty result is refused in one line."""
    sl = slice(cfg.get("start"), cfg.get("stop"))
    x, y = x[sl], (None if y is None else y[sl])
    if len(x) == 0:
        raise EdgeCommitteeError(f"{where}: the split is empty (check start/stop)")
    return x, y


def _integer_labels(labels: Any, where: str) -> np.ndarray:
    """Labels as int64 (N,); float or bool labels are refused rather than truncated."""
    arr = np.asarray(labels)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise EdgeCommitteeError(
            f"{where}: labels must be integer class indices; got dtype {arr.dtype} "
            "(save them with .astype(np.int64))"
        )
    return arr.astype(np.int64).reshape(-1)
