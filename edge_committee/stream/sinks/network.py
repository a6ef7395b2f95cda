"""``rtp://``, ``udp://`` and ``rtsp://`` outputs: the overlay video streamed live (jetson-utils'
``videoOutput`` URIs), H.264 by PyAV (FFmpeg in the wheel).

- ``udp://HOST:PORT``: MPEG-TS over UDP (``ffplay udp://@:PORT``, VLC, ``--source udp://@:PORT``);
- ``rtp://HOST:PORT``: MPEG-TS over RTP (payload 33; ``ffplay rtp://@:PORT``, ``--source rtp://@:PORT``);
- ``rtsp://HOST:PORT/PATH``: served by this process (:mod:`.rtsp_server`), as jetson-utils'
  ``rtsp://@:8554/out``: players open that URL (``ffplay rtsp://127.0.0.1:8554/out``). ``HOST`` is the
  address to bind: ``127.0.0.1`` (this machine only), an interface's address, or ``@`` for every
  interface; no authentication, so bind to a trusted network only.
- ``rtsp://HOST:PORT/PATH#publish=1``: published instead (RTSP ANNOUNCE/RECORD over TCP) to an RTSP
  server at that address, e.g. MediaMTX; players then play it from that server.

One stream per source: with several sources, source ``i`` goes to ``PORT + i`` (UDP, RTP) or
``PATH-i`` (RTSP). Frames are timed by their capture time; every 25th frame is a key frame so a
viewer that joins late starts within about a second. A password in the URL is never shown.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from edge_committee._lazy import require
from edge_committee.stream.sinks.base import Sink
from edge_committee.stream.sinks.overlay import draw_overlay
from edge_committee.stream.sinks.rtsp_server import TS_PACKET, RtspServer
from edge_committee.stream.sinks.video import MS, add_video_stream
from edge_committee.stream.types import SourceError, StreamBatch, redact

log = logging.getLogger("edge_committee.stream")
#: scheme -> FFmpeg muxer
FORMATS = {"udp": "mpegts", "rtp": "rtp_mpegts", "rtsp": "rtsp"}
_URL = re.compile(r"^(udp|rtp|rtsp)://([^/?#]+?)(?::(\d+))?(/[^?#]*)?$")


def output_urls(url: str, n_sources: int) -> list[str]:
    """The address of each source's stream (``url`` itself for one source)."""
    m = _URL.match(url)
    if m is None or (m.group(1) != "rtsp" and not m.group(3)):
        raise SourceError(f"sink {redact(url)}: expected udp://HOST:PORT, rtp://HOST:PORT or rtsp://HOST[:PORT]/PATH")
    if n_sources == 1:
        return [url]
    scheme, host, port, path = m.groups()
    if scheme == "rtsp":
        return [f"{scheme}://{host}{':' + port if port else ''}{path or '/out'}-{i}" for i in range(n_sources)]
    return [f"{scheme}://{host}:{int(port) + i}{path or ''}" for i in range(n_sources)]


class _TsBuffer:
    """A write-only file for PyAV's MPEG-TS muxer; :meth:`take` hands over the whole TS packets so far."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b) -> int:
        self.data += b
        return len(b)

    def take(self) -> bytes:
        n = len(self.data) // TS_PACKET * TS_PACKET
        out = bytes(self.data[:n])
        del self.data[:n]
        return out


class _Stream:
    """One live H.264 output: to ``url``, or MPEG-TS into ``buffer`` (for the RTSP server)."""

    def __init__(self, av, url: str, shape: tuple[int, int], buffer: _TsBuffer | None = None) -> None:
        scheme = url.split(":", 1)[0]
        options = {"rtsp_transport": "tcp"} if scheme == "rtsp" else {}
        try:
            if buffer is not None:
                self.container = av.open(buffer, mode="w", format="mpegts", options={"flush_packets": "1"})
            else:
                self.container = av.open(url, mode="w", format=FORMATS[scheme], options=options, timeout=10.0)
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"sink {redact(url)}: cannot open the output stream ({redact(str(exc))}); for "
                              "rtsp:// an RTSP server must listen there (e.g. MediaMTX)") from None
        self.stream, self.h, self.w = add_video_stream(av, self.container, shape,
                                                       {"preset": "ultrafast", "tune": "zerolatency"})
        self.t0: float | None = None
        self.last_pts = -1
        self.frames = 0

    def add(self, av, rgb: np.ndarray, t_capture: float) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: self.h, : self.w]), format="rgb24")
        self.t0 = t_capture if self.t0 is None else self.t0
        pts = max(self.last_pts + 1, round((t_capture - self.t0) * 1000))
        frame.pts, frame.time_base, self.last_pts = pts, MS, pts
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()


class NetworkSink(Sink):
    """``--sink udp://HOST:PORT`` / ``rtp://HOST:PORT`` / ``rtsp://HOST:PORT/PATH[#publish=1]`` (see the module doc)."""

    def __init__(self, url: str) -> None:
        url, _, fragment = url.partition("#")
        if fragment not in ("", "publish=1"):
            raise SourceError(f"sink {redact(url)}: unknown option {fragment!r}; rtsp:// outputs take #publish=1")
        output_urls(url, 1)  # one line now for a malformed address
        self.url = url
        self.serve = url.startswith("rtsp:") and not fragment
        self._streams: dict[str, _Stream] = {}
        self.servers: dict[str, RtspServer] = {}

    def start(self, sources: list[str], members: list[str]) -> None:
        super().start(sources, members)
        self._av = require("av")
        self.urls = dict(zip(sources, output_urls(self.url, len(sources))))
        if self.serve:
            for source, url in self.urls.items():
                m = _URL.match(url)
                host = "0.0.0.0" if m.group(2) == "@" else m.group(2)
                try:
                    self.servers[source] = RtspServer(host, int(m.group(3) or 8554), m.group(4) or "/").start()
                except OSError as exc:
                    self.close()
                    raise SourceError(f"sink {redact(url)}: cannot serve RTSP there ({exc}); choose another port "
                                      "or address") from None
                log.info("serving %s at %s", source, redact(url).replace("//@", "//0.0.0.0"))

    def write(self, batch: StreamBatch, fps: dict[str, float]) -> None:
        for frame, result in zip(batch.frames, batch.results):
            rgb = draw_overlay(frame.image, result, fps.get(frame.source))
            s = self._streams.get(frame.source)
            if s is None:
                buffer = _TsBuffer() if self.serve else None
                s = self._streams[frame.source] = _Stream(self._av, self.urls[frame.source], rgb.shape[:2], buffer)
                s.buffer = buffer
            if rgb.shape[0] >= s.h and rgb.shape[1] >= s.w:  # a frame of another size is not sent
                try:
                    s.add(self._av, rgb, frame.t_mono)
                except (self._av.FFmpegError, OSError) as exc:
                    raise SourceError(f"sink {redact(self.urls[frame.source])}: the stream broke after {s.frames} "
                                      f"frames ({redact(str(exc))}); is the receiving server still up?") from None
                if s.buffer is not None:
                    self.servers[frame.source].send(s.buffer.take())

    def close(self, ok: bool = True) -> None:
        streams, self._streams = self._streams, {}
        for s in streams.values():
            try:
                s.close()
            except Exception:  # a viewer or server that went away: the stream is closed either way
                pass
        servers, self.servers = self.servers, {}
        for server in servers.values():
            server.stop()
