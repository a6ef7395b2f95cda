"""Publish the ``test://counter`` frames as H.264 over RTSP to a listening reader (test helper).

    python rtsp_publisher.py rtsp://127.0.0.1:PORT/live SECONDS [FPS]

FFmpeg's RTSP muxer connects to the URL (ANNOUNCE/RECORD) and pushes frames at FPS for at most
SECONDS, then exits. It retries the connection for up to 10 s (the reader may not listen yet).
Every loop is bounded; the test stops it by its pid.
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction

import av

from edge_committee.stream.sources.test import paint_counter


def connect(url: str, deadline: float):
    while True:
        try:
            return av.open(url, mode="w", format="rtsp", options={"rtsp_transport": "tcp"})
        except (av.FFmpegError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(url: str, seconds: float, fps: int = 25) -> None:
    start = time.monotonic()
    out = connect(url, start + 10.0)
    s = out.add_stream("libx264", rate=fps, options={"tune": "zerolatency", "preset": "ultrafast", "g": str(fps)})
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    t0 = time.monotonic()
    for i in range(int(seconds * fps)):
        f = av.VideoFrame.from_ndarray(paint_counter(i), format="rgb24")
        f.pts, f.time_base = i, Fraction(1, fps)
        for p in s.encode(f):
            out.mux(p)
        wait = t0 + (i + 1) / fps - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    for p in s.encode():
        out.mux(p)
    out.close()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 25)
