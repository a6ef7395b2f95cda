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
    #: a video bundle: (first, last) frame index of the clip whose result this is (None: warming up, or images)
    clip_span: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        """The JSON-lines record (``type: frame``; a video bundle's frames add ``clip_span``)."""
        d = {"type": "frame", "source": self.source, "frame_index": self.frame_index,
             "timestamp": round(self.timestamp, 6), "pts": None if self.pts is None else round(self.pts, 6),
             "label": self.label, "class": self.class_index, "confidence": round(self.confidence, 6),
             "exit_stage": self.exit_stage, "exit_member": self.exit_member, "flags": self.flags,
             "latency_ms": round(self.latency_ms, 3), "dropped": self.dropped}
        if self.clip_span is not None:
            d["clip_span"] = list(self.clip_span)
        return d


@dataclasses.dataclass
class ClipResult:
    """The clip cascade's answer for one sliding clip of a source (one ``type: clip`` JSON line)."""

    source: str
    frame_indices: tuple[int, ...]  #: the source's frame index of each frame of the clip, in order
    timestamp: float  #: capture time of the clip's last frame, wall clock, s
    label: str
    class_index: int
    confidence: float
    exit_stage: int
    exit_member: str
    flags: int
    latency_ms: float  #: capture of the clip's last frame to its result, ms

    @property
    def span(self) -> tuple[int, int]:
        """(first, last) frame index of the clip."""
        return self.frame_indices[0], self.frame_indices[-1]

    @property
    def dropped(self) -> int:
        """Frames of the source inside the clip's span that are not in the clip (dropped by a live source)."""
        return self.frame_indices[-1] - self.frame_indices[0] + 1 - len(self.frame_indices)

    def to_dict(self) -> dict:
        """The JSON-lines record (``type: clip``): the frame span, frames, frames dropped within it."""
        first, last = self.span
        return {"type": "clip", "source": self.source, "first_frame": first, "last_frame": last,
                "frames": len(self.frame_indices), "dropped_in_clip": self.dropped,
                "timestamp": round(self.timestamp, 6), "label": self.label, "class": self.class_index,
                "confidence": round(self.confidence, 6), "exit_stage": self.exit_stage,
                "exit_member": self.exit_member, "flags": self.flags, "latency_ms": round(self.latency_ms, 3)}


@dataclasses.dataclass
class StreamBatch:
    """One tick of a stream: the frames taken (at most one per source), their prediction and results."""

    frames: list[Frame]
    prediction: object  #: :class:`edge_committee.runtime.Prediction` of ``frames``, in order
    results: list[FrameResult]
    #: a video bundle: the clips classified in this tick (:class:`ClipResult`), in source order
    clips: list = dataclasses.field(default_factory=list)

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
