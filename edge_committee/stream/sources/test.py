"""``test://PATTERN``: synthetic sources for tests and demos (no camera, no file).

Patterns:

- ``counter`` (default): the frame number painted as 16 black/white blocks (a 4x4 grid), which
  survive lossy coding; :func:`read_counter` reads it back.
- ``array``: the frames of an ``.npy`` array ``path=frames.npy`` of uint8 (N, H, W[, C]), cycled.
- ``fashion-mnist``: the Fashion-MNIST test images of the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``), cycled: a demo feed for the example bundle.

Options: ``fps`` (frames per second, default 25; 0 = as fast as they are taken), ``size=WxH``
(counter only, default 64x48), ``live`` (default 1: latest-frame and reconnect, like a camera;
0: every frame, like a file), ``count`` (frames before the stream ends, 0 = never), and, to
rehearse faults: ``stall_after=N`` (after N frames of each connection no frame comes until the
stall timeout), ``fail_opens=N`` (the first N opens fail). Every connection continues the
numbering of the one before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from edge_committee.stream.sources.base import Read, Source, _bool, _nonneg, _size
from edge_committee.stream.types import SourceError, StallError

PATTERNS = ("counter", "array", "fashion-mnist")
FASHION_MNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
_GRID = 4  # counter blocks per side: 16 bits


def paint_counter(index: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """An (H, W, 3) uint8 image with ``index`` (mod 2**16) painted as a 4x4 grid of black/white blocks."""
    w, h = size
    bits = (index >> np.arange(_GRID * _GRID)) & 1
    grid = (bits.reshape(_GRID, _GRID) * 255).astype(np.uint8)
    rows = np.repeat(np.arange(_GRID), -(-h // _GRID))[:h]
    cols = np.repeat(np.arange(_GRID), -(-w // _GRID))[:w]
    return np.repeat(grid[rows][:, cols][..., None], 3, axis=-1)


def read_counter(image: np.ndarray) -> int:
    """The index painted by :func:`paint_counter`, read from the centre of each block."""
    h, w = image.shape[:2]
    gray = image.reshape(h, w, -1).mean(axis=-1)
    bh, bw = h / _GRID, w / _GRID
    value = 0
    for b in range(_GRID * _GRID):
        r, c = divmod(b, _GRID)
        if gray[int((r + 0.5) * bh), int((c + 0.5) * bw)] > 127:
            value |= 1 << b
    return value


def _pattern(v: Any) -> str:
    if v not in PATTERNS:
        raise ValueError(f"unknown pattern; use one of {', '.join(PATTERNS)}")
    return str(v)


class TestSource(Source):
    #: rehearses a network camera: a failed first open is retried, as for rtsp://
    retry_open = True

    __test__ = False  # not a pytest test class
    kind = "test"
    OPTIONS: ClassVar[dict[str, Callable[[Any], Any]]] = {"fps": _nonneg(float), "size": _size, "live": _bool, "count": _nonneg(int), "path": str,
               "stall_after": _nonneg(int), "fail_opens": _nonneg(int)}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        try:
            self.pattern = _pattern(self.target or "counter")
        except ValueError as exc:
            raise SourceError(f"source {self.uri}: {exc}") from None
        self.live = self.options.get("live", True)
        self.fps = self.options.get("fps", 25.0)
        self._generated = 0  # frames made over all connections: the painted number
        self._opens = 0
        self._images: np.ndarray | None = None

    def _load(self) -> np.ndarray | None:
        if self.pattern == "counter":
            return None
        if self.pattern == "array":
            path = self.options.get("path")
            if not path:
                raise SourceError(f"source {self.uri}: the array pattern needs path=FILE.npy")
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise SourceError(f"source {self.uri}: cannot read {path}: {exc}") from None
        else:
            from edge_committee.data.readers import read_idx
            from edge_committee.errors import EdgeCommitteeError

            try:
                arr = read_idx(self.options.get("path", FASHION_MNIST))
            except EdgeCommitteeError as exc:
                raise SourceError(f"source {self.uri}: {exc}; install it with: apt-get install "
                                  "dataset-fashion-mnist") from None
        if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or len(arr) == 0:
            raise SourceError(f"source {self.uri}: expected uint8 images (N, H, W[, C]); got {arr.dtype} {arr.shape}")
        return arr if arr.ndim == 4 else arr[..., None]

    def open(self) -> None:
        self._opens += 1
        if self._opens <= self.options.get("fail_opens", 0):
            raise SourceError(f"source {self.uri}: refused (fail_opens={self.options['fail_opens']})")
        if self._images is None:
            self._images = self._load()
        self._in_connection = 0
        self._t0 = time.monotonic()

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` of the pattern."""
        if self._images is None:
            return paint_counter(index, self.options.get("size", (64, 48)))
        return self._images[index % len(self._images)]

    def read(self) -> Read | None:
        count = self.options.get("count", 0)
        if count and self._in_connection >= count:
            return None
        stall_after = self.options.get("stall_after")
        if stall_after is not None and self._in_connection >= stall_after:
            time.sleep(self.common.stall_timeout)  # a frozen camera: nothing until the timeout
            raise StallError(f"source {self.uri}: no frame for {self.common.stall_timeout:g} s (stalled)")
        if self.fps:
            wait = self._t0 + self._in_connection / self.fps - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        image = self.frame(self._generated)
        pts = self._in_connection / self.fps if self.fps else None
        self._generated += 1
        self._in_connection += 1
        return image, pts
