"""``csi://N``: a MIPI CSI camera on a Jetson, through GStreamer's ``nvarguscamerasrc`` in OpenCV.

Needs an OpenCV built with GStreamer: JetPack's own (``python3-opencv`` / ``libopencv``). The pip
``opencv-python(-headless)`` wheels have no GStreamer, and one installed over JetPack's hides it,
so the source checks ``cv2`` and says so. The appsink keeps one buffer and drops older ones
(``max-buffers=1 drop=true``): without ``drop`` a slow consumer makes the camera lag for seconds.

Options: ``size=1280x720`` (default), ``fps=30`` (default), ``flip=0..7`` (``nvvidconv
flip-method``, default 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from edge_committee._lazy import require
from edge_committee.stream.sources.base import Read, Source, _size
from edge_committee.stream.types import PermanentSourceError, SourceError


def _flip(v: Any) -> int:
    x = int(v)
    if not 0 <= x <= 7:
        raise ValueError("flip is nvvidconv's flip-method, 0..7")
    return x


def csi_pipeline(sensor_id: int, size: tuple[int, int] = (1280, 720), fps: float = 30, flip: int = 0) -> str:
    """The GStreamer launch string for one CSI sensor, ending in an appsink OpenCV reads (BGR)."""
    w, h = size
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! "
            f"video/x-raw(memory:NVMM),width={w},height={h},framerate={round(fps)}/1,format=NV12 ! "
            f"nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink max-buffers=1 drop=true sync=false")


def has_gstreamer(cv2) -> bool:
    """Whether this OpenCV can open GStreamer pipelines."""
    try:
        return bool(cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER))
    except AttributeError:  # very old OpenCV: read the build information
        return "GStreamer:                   YES" in cv2.getBuildInformation()


class CsiSource(Source):
    kind = "csi"
    OPTIONS: ClassVar[dict[str, Callable[[Any], Any]]] = {"size": _size, "fps": float, "flip": _flip}
    live = True

    def sensor_id(self) -> int:
        try:
            return int(self.target)
        except ValueError:
            raise SourceError(f"source {self.uri}: expected csi://N with N the sensor number (csi://0)") from None

    def pipeline(self) -> str:
        o = self.options
        return csi_pipeline(self.sensor_id(), o.get("size", (1280, 720)), o.get("fps", 30.0), o.get("flip", 0))

    def open(self) -> None:
        pipeline = self.pipeline()
        cv2 = require("cv2")
        if not has_gstreamer(cv2):
            raise PermanentSourceError(
                f"source {self.uri}: this OpenCV ({cv2.__version__}) has no GStreamer, so CSI cameras cannot be "
                "opened; on a Jetson use JetPack's OpenCV (apt install python3-opencv) and remove pip's "
                "(pip uninstall opencv-python opencv-python-headless)")
        self._cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        if not self._cap.isOpened():
            raise SourceError(f"source {self.uri}: GStreamer could not start {pipeline!r}; is nvargus-daemon "
                              "running and the sensor connected? (test: gst-launch-1.0 nvarguscamerasrc ! fakesink)")
        self.fps = self.options.get("fps", 30.0)

    def read(self) -> Read | None:
        ok, bgr = self._cap.read()
        if not ok:
            return None
        return np.ascontiguousarray(bgr[..., ::-1]), None

    def close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()
        self._cap = None
