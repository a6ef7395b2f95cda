"""A small RTSP server for ``--sink rtsp://HOST:PORT/PATH``: the overlay served to any RTSP player.

jetson-utils' ``videoOutput("rtsp://@:8554/out")`` serves its stream itself; PyAV's FFmpeg can
publish to an RTSP server but cannot be one. This module is that server, for one stream: MPEG-TS
(H.264, made by PyAV's muxer) in RTP packets (payload type 33, RFC 2250), sent interleaved on the
player's RTSP TCP connection (RFC 2326 §10.12). Players that ask for UDP get ``461 Unsupported
Transport`` and retry over TCP (FFmpeg, ffplay and GStreamer do; VLC with ``--rtsp-tcp``).

Methods: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER (keep-alive). No authentication:
bind it to 127.0.0.1 (the default for a host named so) or a trusted network. A player that joins
late gets the next key frame (every 25 frames) and the stream's tables (repeated by the muxer).
Every socket wait is bounded, so :meth:`RtspServer.stop` returns within about a second.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time

log = logging.getLogger("edge_committee.stream")

TS_PACKET = 188
RTP_PAYLOAD = 7 * TS_PACKET  #: 1316 bytes: 7 MPEG-TS packets per RTP packet
_POLL_S = 0.5


class _Player:
    def __init__(self, conn: socket.socket, channel: int) -> None:
        self.conn, self.channel = conn, channel
        self.seq = 0
        self.lock = threading.Lock()


class RtspServer:
    """Serves one MPEG-TS stream at ``rtsp://host:port/path`` (see the module doc).

    Args:
        host: the address to bind (``0.0.0.0``: every interface).
        port: the TCP port (0: a free one; :attr:`port` has it after :meth:`start`).
        path: the stream's path, e.g. ``/out`` (other paths get 404).
    """

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, int(port), "/" + path.strip("/")
        self._players: list[_Player] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None
        self._ssrc = 0x45430001
        self._t0 = time.monotonic()

    @property
    def players(self) -> int:
        with self._lock:
            return len(self._players)

    def start(self) -> RtspServer:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(8)
        s.settimeout(_POLL_S)
        self._sock, self.port = s, s.getsockname()[1]
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            players, self._players = self._players, []
        for p in players:
            with contextlib.suppress(OSError):
                p.conn.close()
        for t in self._threads:
            t.join(timeout=2 * _POLL_S + 1)

    def send(self, ts: bytes) -> None:
        """Send MPEG-TS bytes (a multiple of 188) to every playing client, 7 TS packets per RTP packet."""
        with self._lock:
            players = list(self._players)
        if not players:
            return
        stamp = int((time.monotonic() - self._t0) * 90000) & 0xFFFFFFFF
        for p in players:
            try:
                with p.lock:
                    for i in range(0, len(ts), RTP_PAYLOAD):
                        chunk = ts[i : i + RTP_PAYLOAD]
                        rtp = struct.pack("!BBHII", 0x80, 33, p.seq & 0xFFFF, stamp, self._ssrc) + chunk
                        p.seq += 1
                        p.conn.sendall(struct.pack("!BBH", 0x24, p.channel, len(rtp)) + rtp)
            except OSError:  # the player went away
                self._drop(p)

    # -- connections -----------------------------------------------------------------------
    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True, name="rtsp-server")
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(_POLL_S)
            self._spawn(self._serve, conn)

    def _drop(self, player: _Player) -> None:
        with self._lock:
            if player in self._players:
                self._players.remove(player)
        with contextlib.suppress(OSError):
            player.conn.close()

    def _serve(self, conn: socket.socket) -> None:
        buf, session, player = b"", f"{id(conn) & 0xFFFFFFF:08X}", None
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                if not data:
                    return
                buf += data
                while True:
                    if buf[:1] == b"$":  # an interleaved packet from the player (RTCP): skip it
                        if len(buf) < 4 or len(buf) < 4 + struct.unpack("!H", buf[2:4])[0]:
                            break
                        buf = buf[4 + struct.unpack("!H", buf[2:4])[0]:]
                        continue
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    request, buf = buf[:end].decode("latin-1"), buf[end + 4:]
                    player = self._answer(conn, request, session, player)
        except OSError:
            pass
        finally:
            if player is not None:
                self._drop(player)
            with contextlib.suppress(OSError):
                conn.close()

    def _answer(self, conn: socket.socket, request: str, session: str, player: _Player | None) -> _Player | None:
        lines = request.split("\r\n")
        method, url = (lines[0].split(" ") + ["", ""])[:2]
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        cseq = headers.get("cseq", "0")
        base = url.split("?")[0].rstrip("/")

        def reply(status: str, extra: str = "", body: str = "") -> None:
            head = f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\nServer: edge_committee\r\n{extra}"
            if body:
                head += f"Content-Length: {len(body)}\r\n"
            conn.sendall((head + "\r\n" + body).encode("latin-1"))

        if method == "OPTIONS":
            reply("200 OK", "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n")
        elif method in ("DESCRIBE", "SETUP", "PLAY") and not _path_of(base).startswith(self.path):
            reply("404 Not Found")
        elif method == "DESCRIBE":
            sdp = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=edge_committee overlay\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
                   "m=video 0 RTP/AVP 33\r\na=rtpmap:33 MP2T/90000\r\na=control:track0\r\n")
            reply("200 OK", f"Content-Base: {base}/\r\nContent-Type: application/sdp\r\n", sdp)
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "RTP/AVP/TCP" not in transport:
                reply("461 Unsupported Transport")
            else:
                channel = 0
                if "interleaved=" in transport:
                    channel = int(transport.split("interleaved=")[1].split("-")[0].split(";")[0])
                player = _Player(conn, channel)
                reply("200 OK", f"Transport: RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}\r\n"
                                f"Session: {session};timeout=60\r\n")
        elif method == "PLAY" and player is not None:
            reply("200 OK", f"Session: {session}\r\nRange: npt=0.000-\r\n")
            with self._lock:
                if player not in self._players:
                    self._players.append(player)
        elif method == "TEARDOWN":
            reply("200 OK", f"Session: {session}\r\n")
            if player is not None:
                self._drop(player)
            return None
        elif method == "GET_PARAMETER":
            reply("200 OK", f"Session: {session}\r\n")
        else:
            reply("455 Method Not Valid in This State" if method == "PLAY" else "501 Not Implemented")
        return player


def _path_of(url: str) -> str:
    """``rtsp://host:port/out/track0`` -> ``/out/track0``."""
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
