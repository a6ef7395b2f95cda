"""``v4l2:///dev/videoN`` (and bare ``/dev/videoN``): USB and other V4L2 cameras, through PyAV.

Options (``?`` or ``#``): ``size=1280x720``, ``fps=30``, ``format=mjpeg`` (the camera's pixel
format, FFmpeg's name: see ``v4l2-ctl --list-formats-ext -d /dev/videoN``). Without options the
driver's current mode is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

from edge_committee._lazy import require
from edge_committee.stream.sources._av import AvSource
from edge_committee.stream.sources.base import _size
from edge_committee.stream.types import PermanentSourceError, SourceError

#: pixel formats a V4L2 camera offers that FFmpeg's v4l2 input can read; aliases -> FFmpeg names
PIXEL_FORMATS = {
    "mjpeg": "mjpeg", "mjpg": "mjpeg", "jpeg": "mjpeg", "h264": "h264",
    "yuyv": "yuyv422", "yuyv422": "yuyv422", "yuy2": "yuyv422", "uyvy": "uyvy422", "uyvy422": "uyvy422",
    "nv12": "nv12", "nv21": "nv21", "yuv420p": "yuv420p", "yu12": "yuv420p",
    "rgb24": "rgb24", "bgr24": "bgr24", "gray": "gray", "grey": "gray",
}


def _pixel_format(v: Any) -> str:
    key = str(v).lower()
    if key not in PIXEL_FORMATS:
        raise ValueError(f"unsupported pixel format; use one of {', '.join(sorted(set(PIXEL_FORMATS.values())))}")
    return PIXEL_FORMATS[key]


def _fps(v: Any) -> float:
    x = float(v)
    if x <= 0:
        raise ValueError("fps must be positive")
    return x


def v4l2_options(options: dict[str, Any]) -> dict[str, str]:
    """FFmpeg v4l2 demuxer options from ours (``size``, ``fps``, ``format``)."""
    out = {}
    if "size" in options:
        w, h = options["size"]
        out["video_size"] = f"{w}x{h}"
    if "fps" in options:
        out["framerate"] = f"{options['fps']:g}"
    if "format" in options:
        out["input_format"] = options["format"]
    return out


class V4l2Source(AvSource):
    kind = "v4l2"
    OPTIONS: ClassVar[dict[str, Callable[[Any], Any]]] = {"size": _size, "fps": _fps, "format": _pixel_format}
    live = True

    def av_args(self) -> tuple[str, dict[str, Any]]:
        return self.target, {"format": "video4linux2", "options": v4l2_options(self.options),
                             "timeout": (self.common.open_timeout, self.common.stall_timeout)}

    def open(self) -> None:
        if not os.path.exists(self.target):
            raise PermanentSourceError(f"source {self.uri}: no such device {self.target}; is the camera connected? "
                              "list cameras with: ls /dev/video* (or v4l2-ctl --list-devices)")
        av = require("av")
        if "video4linux2,v4l2" not in av.formats_available and "video4linux2" not in av.formats_available:
            raise PermanentSourceError(f"source {self.uri}: this PyAV build has no V4L2 input (Linux only)")
        super().open()

    def open_error(self, exc: Exception) -> SourceError:
        return SourceError(f"source {self.uri}: the camera refused the mode {v4l2_options(self.options) or '(default)'} "
                           f"({exc}); list its modes with: v4l2-ctl --list-formats-ext -d {self.target}")
