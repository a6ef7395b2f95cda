"""``video:overlay.mp4``: each processed frame with its result drawn, encoded as H.264 by PyAV.

One file per source: ``overlay.mp4`` for one source, ``overlay-0.mp4``, ``overlay-1.mp4``, ... (in
``--source`` order) for several. Frames are timed by the source's own presentation times when it
has them (a file, an RTSP or UDP stream: a 40 s clip gives a 40 s video, whatever the processing
speed; a clock that jumps back, as on a reconnect or a ``loop``, continues from the last frame),
else by their capture time (1 ms time base). Each file is written as ``NAME.partial.mp4``
beside the target and renamed when the stream ends, so a crash never leaves a half-written video
under the final name. MP4 and MOV files are fragmented (a fragment per second of video), so the
``.partial`` file of a run killed by SIGKILL or a power cut plays up to its last fragment; it is
visible, never hidden, and the next run picks another ``.partial-N`` name rather than touch it.
``libx264`` is in PyAV's wheels; without it MPEG-4 Part 2 is used. A target that exists is replaced
only if ``force`` (``run --force``); a device node, FIFO, folder or symbolic link never
(:func:`~edge_committee._util.check_output_file`). An I/O error (read-only or full file system) is
one :class:`SinkError` line; the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from edge_committee._lazy import require
from edge_committee._util import check_output_file, refuse_unsafe_target
from edge_committee.errors import OutputError
from edge_committee.stream.sinks.base import Sink, SinkError
from edge_committee.stream.sinks.overlay import draw_overlay
from edge_committee.stream.types import SourceError, StreamBatch

MS = Fraction(1, 1000)


def add_video_stream(av, container, shape: tuple[int, int], x264_options: dict):
    """An H.264 stream in ``container`` for frames of ``shape`` (MPEG-4 Part 2 where PyAV has no libx264):
    25 fps, a keyframe every 25 frames, yuv420p at the even size below ``shape``, a 1 ms time base.
    Returns (stream, height, width)."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    stream = container.add_stream(codec, rate=25, options=x264_options if codec == "libx264" else {})
    stream.codec_context.gop_size = 25
    h, w = shape[0] // 2 * 2, shape[1] // 2 * 2  # yuv420p needs even sizes
    stream.width, stream.height = w, h
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = MS
    return stream, h, w


def output_paths(target: str, n_sources: int) -> list[Path]:
    """The file of each source: ``target`` itself for one source, ``stem-i.suffix`` for several."""
    p = Path(target)
    if n_sources == 1:
        return [p]
    return [p.with_name(f"{p.stem}-{i}{p.suffix}") for i in range(n_sources)]


_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}


def _partial_path(path: Path) -> Path:
    """A new, visible ``NAME.partial[-N].ext`` beside ``path`` (created empty, never an existing one)."""
    for i in itertools.count():
        candidate = path.with_name(f"{path.stem}.partial{f'-{i}' if i else ''}{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


class _Writer:
    """One open output file."""

    def __init__(self, av, path: Path, shape: tuple[int, int]) -> None:
        self.path = path
        self.tmp = _partial_path(path)
        fragmented = path.suffix.lower() in (".mp4", ".mov", ".m4v")
        # a fragment per keyframe, each written through at once (else 256 KiB sit in the I/O buffer)
        options = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"} if fragmented else {}
        self.container = av.open(str(self.tmp), mode="w", format=_FORMATS.get(path.suffix.lower()), options=options)
        # a keyframe, hence a fragment, about every second
        self.stream, self.h, self.w = add_video_stream(av, self.container, shape, {"preset": "veryfast"})
        self.t0: float | None = None
        self.last_pts = -1
        self.frames = 0

    def add(self, av, rgb: np.ndarray, t_capture: float, pts: float | None = None) -> None:
        if rgb.shape[0] < self.h or rgb.shape[1] < self.w:  # a source that changed size: pad
            pad = np.zeros((max(self.h, rgb.shape[0]), max(self.w, rgb.shape[1]), 3), np.uint8)
            pad[: rgb.shape[0], : rgb.shape[1]] = rgb
            rgb = pad
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: self.h, : self.w]), format="rgb24")
        t = t_capture if pts is None else pts
        if self.t0 is None:
            self.t0 = t
        ms = round((t - self.t0) * 1000)
        if ms <= self.last_pts and pts is not None:  # the source's clock went back: continue from here
            self.t0 = t - (self.last_pts + 1) / 1000
            ms = self.last_pts + 1
        ms = max(self.last_pts + 1, ms)
        frame.pts, frame.time_base = ms, MS
        self.last_pts = ms
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self, ok: bool) -> None:
        try:
            if ok:
                for packet in self.stream.encode():
                    self.container.mux(packet)
            self.container.close()
            if ok and self.frames:
                refuse_unsafe_target(self.path)  # something put there while recording is not replaced
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()


def _io_error(target: str, exc: Exception) -> SinkError:
    why = getattr(exc, "strerror", None) or str(exc)
    return SinkError(f"sink video:{target}: cannot write ({why}); free space or choose another path")


class VideoSink(Sink):
    def __init__(self, target: str, force: bool = False) -> None:
        if not target:
            raise SourceError("sink video: needs a file name (video:overlay.mp4)")
        self.target = target
        self.force = force
        self._writers: dict[str, _Writer] = {}

    def start(self, sources: list[str], members: list[str]) -> None:
        super().start(sources, members)
        self._av = require("av")
        self.paths = dict(zip(sources, output_paths(self.target, len(sources))))
        for p in self.paths.values():
            if not p.parent.is_dir():
                raise SourceError(f"sink video:{self.target}: folder {p.parent} does not exist")
            try:
                check_output_file(p, self.force, flag=f"sink video:{self.target}:")
            except OutputError as exc:
                raise SinkError(str(exc)) from None

    def write(self, batch: StreamBatch, fps: dict[str, float]) -> None:
        for frame, result in zip(batch.frames, batch.results):
            rgb = draw_overlay(frame.image, result, fps.get(frame.source))
            try:
                w = self._writers.get(frame.source)
                if w is None:
                    w = self._writers[frame.source] = _Writer(self._av, self.paths[frame.source], rgb.shape[:2])
                w.add(self._av, rgb, frame.t_mono, frame.pts)
            except (OSError, self._av.FFmpegError) as exc:
                with contextlib.suppress(SinkError, OutputError):
                    self.close(ok=False)  # the temporary files go; nothing half-written stays
                raise _io_error(self.target, exc) from None

    def close(self, ok: bool = True) -> None:
        writers, self._writers = self._writers, {}
        first = None
        for w in writers.values():
            try:
                w.close(ok)
            except (OSError, OutputError, getattr(getattr(self, "_av", None), "FFmpegError", OSError)) as exc:
                first = first or exc
        if first is not None:
            raise first if isinstance(first, OutputError) else _io_error(self.target, first)

    @property
    def written(self) -> dict[str, Path]:
        """Source name -> output file (for the files that got frames)."""
        return {s: p for s, p in getattr(self, "paths", {}).items() if p.exists()}
