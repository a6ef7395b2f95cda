"""``rtsp://``, ``rtsps://``, ``http://``, ``https://``, ``rtp://``, ``udp://`` streams (PyAV, FFmpeg).

A network stream is live: latest-frame by default, reopened with backoff when it ends or stalls,
and a first open that fails is retried too (the server may come up later). ``rtp://@:5000`` and
``udp://@:5000`` (jetson-utils' spelling: ``@`` = listen on every interface; or give the address to
bind, ``udp://127.0.0.1:5000``) receive MPEG-TS, as ``--sink rtp://`` / ``udp://`` and
``ffmpeg -f mpegts udp://...`` / ``-f rtp_mpegts rtp://...`` send it. A password in the URL is never
shown: messages, results and events carry ``rtsp://user:***@host/...``.
Options (after ``#``, since the query belongs to the server):

- ``transport``: ``tcp`` (default for RTSP: no packet loss on busy links) or ``udp``;
- ``listen=1``: FFmpeg's RTSP *listen* mode: this end is the server a publisher pushes to
  (``ffmpeg -f rtsp rtsp://host:port/path``); the URL's host and port are where it listens;
- ``low_delay`` (default 1 for RTSP, 0 for HTTP): no demuxer buffering (``fflags=nobuffer``); off
  for HTTP because a file served over HTTP needs its probe buffer (FFV1 in MKV fails to decode).

The open and stall timeouts are PyAV's (open, read) timeouts; FFmpeg reports a read timeout
after about twice the read timeout, because its interrupt is checked between retries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

from edge_committee.stream.sources._av import AvSource
from edge_committee.stream.sources.base import _bool
from edge_committee.stream.types import SourceError, redact


def _transport(v: Any) -> str:
    if v not in ("tcp", "udp"):
        raise ValueError(f"{v!r} is not tcp or udp")
    return str(v)


class NetworkSource(AvSource):
    kind = "network"
    OPTIONS: ClassVar[dict[str, Callable[[Any], Any]]] = {"transport": _transport, "listen": _bool, "low_delay": _bool}
    live = True
    retry_open = True

    def av_args(self) -> tuple[str, dict[str, Any]]:
        opts: dict[str, str] = {}
        scheme = self.target.split(":", 1)[0].lower()
        is_rtsp = scheme in ("rtsp", "rtsps")
        if scheme in ("rtp", "udp"):
            if self.options.get("listen") or "transport" in self.options:
                raise SourceError(f"source {self.uri}: 'listen' and 'transport' are RTSP options")
            url = re.sub(r"^(\w+)://@", r"\1://0.0.0.0", self.target)  # jetson-utils' "@:port": listen
            return url, {"container_options": {"fflags": "nobuffer"} if self.options.get("low_delay", True) else {},
                         "options": {"timeout": str(int(self.common.stall_timeout * 1e6))},
                         "timeout": (self.common.open_timeout, self.common.stall_timeout)}
        if is_rtsp:
            opts["rtsp_transport"] = self.options.get("transport", "tcp")
            if self.options.get("listen"):
                opts["rtsp_flags"] = "listen"
                # whole seconds; FFmpeg reads 0 as "do not wait"
                opts["listen_timeout"] = str(max(1, round(self.common.open_timeout)))
        elif self.options.get("listen") or "transport" in self.options:
            raise SourceError(f"source {self.uri}: 'listen' and 'transport' are RTSP options")
        if self.options.get("low_delay", is_rtsp):
            opts["fflags"] = "nobuffer"  # demuxer only: codec flags (low_delay) break some decoders (FFV1)
        return self.target, {"container_options": opts,
                             "timeout": (self.common.open_timeout, self.common.stall_timeout)}

    def open_error(self, exc: Exception) -> SourceError:
        return SourceError(f"source {self.uri}: cannot connect ({redact(str(exc))}); check the address, the "
                           "credentials and that the camera or server is up")
