"""``jsonl:PATH`` / ``jsonl:-``: one JSON object per line, flushed line by line.

Frame lines (``"type": "frame"``): source, frame_index, timestamp (capture, wall clock, s), pts,
label, class, confidence, exit_stage, exit_member, flags, latency_ms (capture to result), dropped
(frames of that source dropped since its previous line); a video bundle's frame lines add
``clip_span`` ([first, last] frame of the clip whose result the frame carries). Clip lines
(``"type": "clip"``, video bundles, one per sliding clip classified, after the frame lines of its
tick): source, first_frame, last_frame, frames, dropped_in_clip (frames of the span a live source
dropped), timestamp (capture of the last frame), label, class, confidence, exit_stage, exit_member,
flags, latency_ms. Event lines (``"type": "event"``): open,
end, eos, stall, reconnecting, reconnect, error, warning, stats, summary, stop.

The file is written in place, whole lines at a time, so it can be followed (``tail -f``) and is
valid JSON lines at any moment; an existing file is replaced when the stream starts. A write that
fails (full disk, read-only file system) is cut back to the last complete line where the file
allows it, and the sink then fails with one :class:`SinkError` line (the pipeline stops; the
other sinks are closed normally). Events that come after the failure are dropped.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from edge_committee.stream.sinks.base import Sink, SinkError
from edge_committee.stream.types import Event, SourceError, StreamBatch


class JsonlSink(Sink):
    def __init__(self, target: str = "-") -> None:
        self.target = target or "-"
        self._lock = threading.Lock()
        self._fd: int | None = None  # the file (None: stdout, or closed)
        self._open = False
        self._pos = 0  # bytes of complete lines written
        self.lines = 0
        self.error: SinkError | None = None
        self._raised = False

    def start(self, sources: list[str], members: list[str]) -> None:
        super().start(sources, members)
        if self.target != "-":
            try:
                self._fd = os.open(self.target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            except OSError as exc:
                raise SourceError(f"sink jsonl:{self.target}: cannot write ({exc.strerror}); check the folder") from None
        self._open = True

    def _write(self, text: str) -> None:
        """Write whole lines; on an error cut the file back to its last complete line (caller holds the lock)."""
        if not self._open:
            return
        try:
            if self._fd is None:
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                view = memoryview(text.encode("utf-8"))
                while view:
                    view = view[os.write(self._fd, view):]
                self._pos += len(text.encode("utf-8"))
            self.lines += text.count("\n")
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self._pos)  # drop a cut-off line (not possible on pipes, devices)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
        self._open = False
        why = exc.strerror or str(exc)
        self.error = SinkError(f"sink jsonl:{self.target}: cannot write ({why}); {self.lines} complete lines were "
                               "written; free space or choose another path")

    def _raise(self) -> None:
        if self.error is not None and not self._raised:
            self._raised = True
            raise self.error

    def write(self, batch: StreamBatch, fps: dict[str, float]) -> None:
        with self._lock:
            self._write("".join(json.dumps(r.to_dict()) + "\n" for r in [*batch.results, *batch.clips]))
        self._raise()

    def event(self, event: Event) -> None:  # called from grabber threads too: never raises
        with self._lock:
            self._write(json.dumps(event.to_dict()) + "\n")

    def close(self, ok: bool = True) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._open = False
        self._raise()
