"""Command-line inputs as a lazy stream of images: files, folders, globs and ``.npy`` batches.

:func:`expand_inputs` turns the arguments of ``edge-committee predict`` into :class:`InputSource`
segments without decoding anything: consecutive image files form one :class:`ImageFiles`
segment, an ``.npy`` batch is memory-mapped. :func:`iter_batches` then decodes ``batch_size``
images at a time, so memory stays flat however many files there are.

An argument is, in this order:

- an ``.npy`` file: uint8 images (N, H, W) or (N, H, W, C), named ``FILE[i]``;
- a folder: every image file under it, **recursively**, sorted by path (the suffixes of
  :data:`~edge_committee.data.readers.IMAGE_SUFFIXES`, any case);
- an existing file: one image;
- a pattern with ``*``, ``?`` or ``[`` that names no file: expanded by Python's ``glob`` (``**``
  matches folders recursively; quote it so the shell leaves it to us), matches sorted, image
  suffixes kept.

Output order is argument order, then the order above within an argument.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from edge_committee.data.readers import IMAGE_SUFFIXES, ImageFiles, list_image_files
from edge_committee.errors import EdgeCommitteeError

_GLOB_CHARS = frozenset("*?[")


@dataclasses.dataclass
class InputSource:
    """One segment of the input stream: image ``files`` (decoded on access) or an ``.npy`` batch
    (``array``, memory-mapped); ``names[i]`` is what a result row calls image ``i``."""

    files: ImageFiles | None = None
    npy: str | None = None
    array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else len(self.array)  # type: ignore[arg-type]

    def name(self, i: int) -> str:
        return self.files.paths[i] if self.files is not None else f"{self.npy}[{i}]"

    def batch(self, start: int, stop: int) -> np.ndarray | list[np.ndarray]:
        """Images ``start:stop``: one (n, H, W, C) uint8 array when their sizes agree, else a list."""
        if self.files is not None:
            return self.files[start:stop]
        return np.ascontiguousarray(self.array[start:stop])  # type: ignore[index]


def _open_npy(path: str) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise EdgeCommitteeError(f"input file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise EdgeCommitteeError(f"cannot read {path}: {exc}") from None
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4):
        raise EdgeCommitteeError(
            f"{path}: expected uint8 images of shape (N, H, W) or (N, H, W, C); got {arr.dtype} {arr.shape}"
        )
    return arr


def _expand_glob(pattern: str) -> list[str]:
    matches = sorted(p for p in glob.glob(pattern, recursive=True)
                     if os.path.isfile(p) and Path(p).suffix.lower() in IMAGE_SUFFIXES)
    if not matches:
        raise EdgeCommitteeError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) match {pattern!r}; "
                                 "check the pattern (quote it so the shell does not expand it first)")
    return matches


def expand_inputs(args: Sequence[str]) -> list[InputSource]:
    """The arguments as segments of a lazy image stream (see the module docstring); nothing is
    decoded, but every named file is checked to exist, so a typo fails before any output."""
    sources: list[InputSource] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            sources.append(InputSource(files=ImageFiles(list(pending))))
            pending.clear()

    for arg in args:
        if os.path.isdir(arg):
            pending.extend(str(p) for p in list_image_files(Path(arg)))
        elif os.path.exists(arg) and arg.endswith(".npy"):
            flush()
            sources.append(InputSource(npy=arg, array=_open_npy(arg)))
        elif os.path.exists(arg):
            pending.append(arg)
        elif _GLOB_CHARS & set(arg):
            pending.extend(_expand_glob(arg))
        else:
            raise EdgeCommitteeError(f"image file not found: {arg}")
    flush()
    return [s for s in sources if len(s)]


def count(sources: Sequence[InputSource]) -> int:
    return sum(len(s) for s in sources)


def iter_batches(sources: Sequence[InputSource], batch_size: int
                 ) -> Iterator[tuple[list[str], np.ndarray | list[np.ndarray]]]:
    """(names, images) of at most ``batch_size`` images at a time, in input order; a batch never
    spans two segments. Only one batch is decoded at a time."""
    if batch_size < 1:
        raise EdgeCommitteeError(f"--batch-size must be at least 1; got {batch_size}")
    for src in sources:
        for start in range(0, len(src), batch_size):
            stop = min(start + batch_size, len(src))
            yield [src.name(i) for i in range(start, stop)], src.batch(start, stop)
