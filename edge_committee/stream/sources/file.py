"""``file://PATH`` and bare paths to video files: every frame, in order (PyAV).

Options: ``realtime=1`` paces decoding at the file's own frame rate and takes the latest frame,
as if the file were a camera (for demos and latency tests); the default decodes as fast as the
consumer takes frames and never drops one. ``loop=N`` plays the file N more times (-1: forever;
jetson-utils' ``--input-loop``); frame indices keep counting, the presentation times continue
across the passes. A file that does not exist fails at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

from edge_committee.stream.sources._av import AvSource
from edge_committee.stream.sources.base import Read, _bool
from edge_committee.stream.types import PermanentSourceError, SourceError


def _loops(v: Any) -> int:
    n = int(v)
    if n < -1:
        raise ValueError("loop must be -1 (forever), 0 or a positive number of extra passes")
    return n


class FileSource(AvSource):
    kind = "file"
    OPTIONS: ClassVar[dict[str, Callable[[Any], Any]]] = {"realtime": _bool, "loop": _loops}
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
            raise PermanentSourceError(f"source {self.uri}: no such file {self.target}; check the path")
        super().open()
        self._t0: float | None = None
        self._passes, self._offset, self._last_pts = 0, 0.0, 0.0

    def open_error(self, exc: Exception) -> SourceError:
        return SourceError(f"source {self.uri}: not a video FFmpeg can decode ({exc}); "
                           "convert it (e.g. to H.264 MP4) or give an image folder")

    def read(self) -> Read | None:
        got = super().read()
        loops = self.options.get("loop", 0)
        if got is None and (loops < 0 or self._passes < loops):
            got = self._rewind()
        if got is not None and got[1] is not None:
            got = (got[0], got[1] + self._offset)
            self._last_pts = got[1]
        if got is not None and self.options.get("realtime") and got[1] is not None:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now - got[1]
            wait = self._t0 + got[1] - now
            if wait > 0:
                time.sleep(wait)
        return got

    def _rewind(self) -> Read | None:
        """Start the next pass: reopen the file; its times continue after the last frame's."""
        self._passes += 1
        step = 1.0 / self.fps if self.fps else 0.0
        offset = self._last_pts + step
        super().close()
        super().open()
        self._offset = offset
        return super().read()
