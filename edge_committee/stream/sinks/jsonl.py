"""``jsonl:PATH`` / ``jsonl:-``: one JSON object per line, flushed line by line.

Frame lines (``"type": "frame"``): source, frame_index, timestamp (capture, wall clock, s), pts,
label, class, confidence, exit_stage, exit_member, flags, latency_ms (capture to result), dropped
(frames of that source dropped since its previous line). Event lines (``"type": "event"``): open,
end, eos, stall, reconnecting, reconnect, error, warning, stats, summary, stop.

The file is written in place, whole lines at a time, so it can be followed (``tail -f``) and is
valid JSON lines at any moment; an existing file is replaced when the stream starts.
"""

from __future__ import annotations

import json
import sys
import threading

from edge_committee.stream.sinks.base import Sink
from edge_committee.stream.types import Event, SourceError, StreamBatch


class JsonlSink(Sink):
    def __init__(self, target: str = "-") -> None:
        self.target = target or "-"
        self._lock = threading.Lock()
        self._f = None

    def start(self, sources: list[str], members: list[str]) -> None:
        super().start(sources, members)
        if self.target == "-":
            self._f = sys.stdout
        else:
            try:
                self._f = open(self.target, "w", encoding="utf-8", buffering=1)
            except OSError as exc:
                raise SourceError(f"sink jsonl:{self.target}: cannot write ({exc.strerror}); check the folder") from None

    def _line(self, obj: dict) -> None:
        with self._lock:
            if self._f is not None:
                self._f.write(json.dumps(obj) + "\n")
                self._f.flush()

    def write(self, batch: StreamBatch, fps: dict[str, float]) -> None:
        with self._lock:
            if self._f is None:
                return
            self._f.write("".join(json.dumps(r.to_dict()) + "\n" for r in batch.results))
            self._f.flush()

    def event(self, event: Event) -> None:
        self._line(event.to_dict())

    def close(self, ok: bool = True) -> None:
        with self._lock:
            if self._f is not None and self._f is not sys.stdout:
                self._f.close()
            elif self._f is not None:
                self._f.flush()
            self._f = None
