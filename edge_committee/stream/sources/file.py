"""``file://PATH`` and bare paths to video files: every frame, in order (PyAV).

Options: ``realtime=1`` paces decoding at the file's own frame rate and takes the latest frame,
as if the file were a camera (for demos and latency tests); the default decodes as fast as the
consumer takes frames and never drops one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

from edge_committee.stream.sources._av import AvSource
from edge_committee.stream.sources.base import Read, _bool
from edge_committee.stream.types import SourceError


class FileSource(AvSource):
    kind = "file"
    OPTIONS: ClassVar[dict[str, Callable[[Any], Any]]] = {"realtime": _bool}
    live = False

    @property
    def policy(self) -> str:
        if self.common.frames == "auto" and self.options.get("realtime"):
            return "latest"
        return super().policy

    def av_args(self) -> tuple[str, dict[str, Any]]:
        return self.target, {}

    def open(self) -> None:
        if not os.path.isfile(self.target):
            raise SourceError(f"source {self.uri}: no such file {self.target}; check the path")
        super().open()
        self._t0: float | None = None

    def open_error(self, exc: Exception) -> SourceError:
        return SourceError(f"source {self.uri}: not a video FFmpeg can decode ({exc}); "
                           "convert it (e.g. to H.264 MP4) or give an image folder")

    def read(self) -> Read | None:
        got = super().read()
        if got is not None and self.options.get("realtime") and got[1] is not None:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now - got[1]
            wait = self._t0 + got[1] - now
            if wait > 0:
                time.sleep(wait)
        return got
