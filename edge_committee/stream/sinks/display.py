"""``display:``: a window per source with the result drawn (OpenCV ``imshow``); ``q`` or Esc stops.

Needs an OpenCV with a GUI (``pip install opencv-python``, not ``-headless``; JetPack's has one)
and, on Linux, a display (``$DISPLAY`` or ``$WAYLAND_DISPLAY``). Both are checked when the stream
starts, with one line saying which is missing.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from edge_committee._lazy import require
from edge_committee.stream.sinks.base import Sink
from edge_committee.stream.sinks.overlay import draw_overlay
from edge_committee.stream.types import SourceError, StreamBatch


def display_problem(cv2) -> str | None:
    """Why this platform cannot show windows, or None when it can."""
    info = cv2.getBuildInformation()
    gui = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.strip().startswith("GUI:")), "")
    if gui.upper().startswith("NONE"):
        return (f"this OpenCV ({cv2.__version__}) has no GUI (a -headless wheel); "
                "pip install opencv-python, or use --sink video:FILE.mp4")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display ($DISPLAY is not set); run it on the device's desktop, or use --sink video:FILE.mp4"
    return None


class DisplaySink(Sink):
    def __init__(self, target: str = "") -> None:
        self.target = target

    def start(self, sources: list[str], members: list[str]) -> None:
        super().start(sources, members)
        self._cv2 = cv2 = require("cv2")
        problem = display_problem(cv2)
        if problem:
            raise SourceError(f"sink display: {problem}")

    def write(self, batch: StreamBatch, fps: dict[str, float]) -> None:
        cv2 = self._cv2
        for frame, result in zip(batch.frames, batch.results):
            rgb = draw_overlay(frame.image, result, fps.get(frame.source))
            cv2.imshow(frame.source, np.ascontiguousarray(rgb[..., ::-1]))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop_requested = True

    def close(self, ok: bool = True) -> None:
        if getattr(self, "_cv2", None) is not None:
            self._cv2.destroyAllWindows()
