"""Decoding through PyAV (FFmpeg in the wheel): the reader the file, network and V4L2 kinds share."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge_committee._lazy import require
from edge_committee.stream.sources.base import Read, Source
from edge_committee.stream.types import SourceError, StallError, redact

#: corrupt packets in a row before a read fails (single ones are skipped: a live H.264 stream
#: joined mid-GOP starts with packets that reference frames it never got)
MAX_BAD_PACKETS = 50


class AvSource(Source):
    """A source decoded by PyAV: subclasses give :meth:`av_args` (the ``av.open`` arguments)."""

    decode_errors = 0  #: corrupt packets skipped so far

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._container = None
        self._frames = None
        self._av = None

    def av_args(self) -> tuple[str, dict[str, Any]]:
        """(what to open, keyword arguments of ``av.open``)."""
        raise NotImplementedError

    def open_error(self, exc: Exception) -> SourceError:
        """The one-line error when ``av.open`` fails (subclasses add the kind's fix)."""
        return SourceError(f"source {self.uri}: cannot open: {redact(str(exc))}")

    def open(self) -> None:
        self._av = av = require("av")
        target, kwargs = self.av_args()
        t0 = time.monotonic()
        try:
            self._container = av.open(target, **kwargs)
        except (av.FFmpegError, OSError) as exc:
            timeout = kwargs.get("timeout")
            if timeout and time.monotonic() - t0 >= 0.9 * self.common.open_timeout:
                # FFmpeg reports its interrupt as whatever the read was doing ("Invalid data ...")
                raise SourceError(f"source {self.uri}: no answer within {self.common.open_timeout:g} s (open "
                                  "timeout); check that the camera or server is up and not overloaded") from None
            raise self.open_error(exc) from None
        if not self._container.streams.video:
            self.close()
            raise SourceError(f"source {self.uri}: has no video stream (audio or data only?)")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: decode keeps up with the stream
        rate = stream.average_rate or stream.base_rate
        self.fps = float(rate) if rate else None
        self._frames = self._decode(stream)

    def _decode(self, stream):
        """Frames of ``stream``, skipping corrupt packets (up to :data:`MAX_BAD_PACKETS` in a row)."""
        av, bad = self._av, 0
        for packet in self._container.demux(stream):
            try:
                frames = packet.decode()
            except av.InvalidDataError:
                self.decode_errors += 1
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise
                continue
            bad = 0
            yield from frames

    def read(self) -> Read | None:
        av = self._av
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.ExitError:  # the interrupt callback fired: no data within the read timeout
            raise StallError(f"source {self.uri}: no data for {self.common.stall_timeout:g} s (stalled)") from None
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"source {self.uri}: read failed: {redact(str(exc))}") from None
        pts = float(frame.time) if frame.time is not None else None
        return np.ascontiguousarray(frame.to_ndarray(format="rgb24")), pts

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # closing a broken connection may raise; it is closed either way
                pass
        self._container = self._frames = None
