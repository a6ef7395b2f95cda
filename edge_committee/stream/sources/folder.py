"""Image folders and globs (``frames/``, ``'frames/*.png'``, ``file:///data/img_*.jpg``): every
image, sorted by name, read with Pillow as (H, W, C) uint8 with C = 1 (gray) or 3 (RGB)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from edge_committee.data.readers import IMAGE_SUFFIXES, read_image
from edge_committee.stream.sources.base import Read, Source
from edge_committee.stream.types import SourceError

GLOB_CHARS = "*?["


def list_images(target: str) -> list[Path]:
    """The image files a folder, glob or single image names, sorted by name."""
    if any(c in target for c in GLOB_CHARS):
        files = [Path(p) for p in glob.glob(target)]
    elif os.path.isdir(target):
        files = list(Path(target).iterdir())
    else:
        files = [Path(target)] if os.path.isfile(target) else []
    return sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class FolderSource(Source):
    kind = "folder"
    live = False

    def open(self) -> None:
        if not any(c in self.target for c in GLOB_CHARS) and not os.path.exists(self.target):
            raise SourceError(f"source {self.uri}: no such file or folder {self.target}; check the path")
        self._files = list_images(self.target)
        if not self._files:
            raise SourceError(f"source {self.uri}: no images ({', '.join(IMAGE_SUFFIXES)}) match {self.target}")
        self._next = getattr(self, "_next", 0)  # a reopen continues where it stopped

    def read(self) -> Read | None:
        if self._next >= len(self._files):
            return None
        path = self._files[self._next]
        self._next += 1
        try:
            return read_image(path), None
        except Exception as exc:  # read_image raises EdgeCommitteeError naming the file
            raise SourceError(f"source {self.uri}: {exc}") from None
