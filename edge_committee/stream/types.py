"""The records a stream passes around: frames in, per-frame results and event lines out."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator

import numpy as np

from edge_committee.errors import EdgeCommitteeError


class SourceError(EdgeCommitteeError):
    """A source cannot be opened or read: the message names the source and the fix."""


class PermanentSourceError(SourceError):
    """A source error that waiting cannot heal (no such file or device, a missing capability):
    the source fails at once, live or not, instead of being retried."""


#: ``scheme://user:password@`` in a URI or in any text that quotes one
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]+)@")


def redact(text: str) -> str:
    """``text`` with every URI password replaced: ``rtsp://admin:***@cam/live`` (never written to results,
    events, logs or errors)."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", str(text))


class StallError(SourceError):
    """A live source delivered no frame within its stall timeout."""


@dataclasses.dataclass
class Frame:
    """One decoded frame, stamped by the grabber that read it."""

    source: str  #: the source's name (its URI unless named)
    index: int  #: 0-based frame index in the source, counted across reconnects
    image: np.ndarray  #: (H, W, C) uint8, C = 3 (RGB) or 1 (gray), as decoded
    timestamp: float  #: capture time, wall clock (``time.time()``), s
    t_mono: float  #: capture time, ``time.monotonic()`` s (latency is measured on this clock)
    pts: float | None = None  #: presentation time in the stream, s (None when the source has none)
    dropped: int = 0  #: frames of this source dropped since the previous delivered frame


@dataclasses.dataclass
class FrameResult:
    """The cascade's answer for one frame (one JSON line of the ``jsonl`` sink)."""

    source: str
    frame_index: int
    timestamp: float  #: capture time, wall clock, s
    label: str  #: class name ("<invalid>" when no member gave finite logits)
    class_index: int
    confidence: float
    exit_stage: int  #: 0-based stage the frame left the cascade at
    exit_member: str
    flags: int  #: 1 where some member gave non-finite logits
    latency_ms: float  #: capture to result, ms
    dropped: int  #: frames of this source dropped since its previous result
    pts: float | None = None

    def to_dict(self) -> dict:
        """The JSON-lines record (``type: frame``)."""
        return {"type": "frame", "source": self.source, "frame_index": self.frame_index,
                "timestamp": round(self.timestamp, 6), "pts": None if self.pts is None else round(self.pts, 6),
                "label": self.label, "class": self.class_index, "confidence": round(self.confidence, 6),
                "exit_stage": self.exit_stage, "exit_member": self.exit_member, "flags": self.flags,
                "latency_ms": round(self.latency_ms, 3), "dropped": self.dropped}


@dataclasses.dataclass
class StreamBatch:
    """One tick of a stream: the frames taken (at most one per source), their prediction and results."""

    frames: list[Frame]
    prediction: object  #: :class:`edge_committee.runtime.Prediction` of ``frames``, in order
    results: list[FrameResult]

    def __iter__(self) -> Iterator[FrameResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> FrameResult:
        return self.results[i]


@dataclasses.dataclass
class Event:
    """Something that happened to a source or the pipeline (one ``type: event`` JSON line).

    ``kind``: ``open``, ``end`` (a file or folder finished), ``eos`` (a live source ended),
    ``stall`` (no frame within the stall timeout), ``reconnecting`` (the delay before a reopen),
    ``reconnect`` (reopened), ``error``, ``warning`` (a library blocking past our timeouts),
    ``stats``, ``summary``, ``stop``.
    """

    kind: str
    source: str | None = None
    message: str = ""
    data: dict | None = None
    time: float = dataclasses.field(default_factory=time.time)

    def to_dict(self) -> dict:
        d = {"type": "event", "event": self.kind, "time": round(self.time, 6)}
        if self.source is not None:
            d["source"] = self.source
        if self.message:
            d["message"] = self.message
        if self.data:
            d.update(self.data)
        return d
