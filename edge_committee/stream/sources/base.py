"""What every source is: a blocking reader that a grabber thread drives.

A source opens, reads one frame at a time (blocking at most its stall timeout) and closes. It
does not own a thread, a queue or a reconnect loop: :mod:`edge_committee.stream.grabber` does that
the same way for every kind, so each kind module only says how to open and decode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from edge_committee.stream.types import SourceError, redact

#: one read: (H, W, C) uint8 image and its presentation time in s (or None)
Read = tuple[np.ndarray, "float | None"]

POLICIES = ("auto", "latest", "every")


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{v!r} is not a boolean (use 1/0, true/false)")


def _size(v: Any) -> tuple[int, int]:
    """'1280x720' -> (1280, 720): width x height in pixels."""
    if isinstance(v, (tuple, list)) and len(v) == 2:
        w, h = (int(x) for x in v)
    else:
        w, _, h = str(v).lower().partition("x")
        w, h = int(w), int(h)
    if w <= 0 or h <= 0:
        raise ValueError(f"{v!r} is not a positive WIDTHxHEIGHT")
    return w, h


def _policy(v: Any) -> str:
    if v not in POLICIES:
        raise ValueError(f"{v!r} is not one of {', '.join(POLICIES)}")
    return str(v)


def _nonneg(conv: Callable) -> Callable:
    def f(v: Any):
        x = conv(v)
        if x < 0:
            raise ValueError(f"{v!r} is negative")
        return x
    return f


#: options every source takes: name -> converter
COMMON_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "name": str,
    "frames": _policy,
    "open_timeout": _nonneg(float),
    "stall_timeout": _nonneg(float),
    "max_reconnects": _nonneg(int),
    "backoff": _nonneg(float),
    "backoff_max": _nonneg(float),
}


@dataclasses.dataclass
class SourceOptions:
    """Options every source takes (URI ``?key=value`` or ``#key=value``, CLI flags, ``stream(**kw)``).

    Attributes:
        name: the source's name in results and events (default: its URI).
        frames: ``latest`` keeps only the newest frame and counts drops (the default for live
            sources); ``every`` delivers every frame in order, never dropping (the default for files
            and folders); ``auto`` picks by kind.
        open_timeout: s to wait for a source to open (default 10).
        stall_timeout: s without a frame before a live source counts as stalled (default 5).
        max_reconnects: reopen a live source at most this many times in a row; 0 = forever (default).
        backoff: first reconnect delay in s, doubled per failed try (default 0.5), with +-25% jitter.
        backoff_max: longest reconnect delay in s (default 10).
    """

    name: str | None = None
    frames: str = "auto"
    open_timeout: float = 10.0
    stall_timeout: float = 5.0
    max_reconnects: int = 0
    backoff: float = 0.5
    backoff_max: float = 10.0


def convert_options(uri: str, raw: Mapping[str, Any], allowed: Mapping[str, Callable]) -> dict[str, Any]:
    """Check and convert ``raw`` options of source ``uri`` against ``allowed`` (name -> converter)."""
    out = {}
    for key, value in raw.items():
        if key not in allowed:
            raise SourceError(f"source {redact(uri)}: unknown option {key!r}; this kind takes: "
                              f"{', '.join(sorted(allowed))}")
        try:
            out[key] = allowed[key](value)
        except (TypeError, ValueError) as exc:
            raise SourceError(f"source {redact(uri)}: option {key}={value!r}: {exc}") from None
    return out


class Source:
    """A blocking frame reader of one kind. Subclasses set :attr:`kind`, :attr:`OPTIONS`, and
    implement :meth:`open`, :meth:`read`, :meth:`close`.

    Args:
        uri: the URI as the user gave it; :attr:`uri` keeps it with any password redacted (it is what
            every message, result and event shows), :attr:`target` the real address.
        target: the part of the URI the kind reads (a path, a URL without our options, a device).
        options: kind options already converted by :func:`convert_options`.
        common: the :class:`SourceOptions`.
    """

    kind = "base"
    #: kind-specific options: name -> converter
    OPTIONS: ClassVar[dict[str, Callable[[Any], Any]]] = {}
    #: whether the source runs in real time (a camera, a network stream): latest-frame by default,
    #: reconnected when it ends or stalls
    live = False
    #: whether a first open that fails is retried (network sources: a server may come up later);
    #: a local camera that cannot open, a missing file or device fails at once
    retry_open = False

    def __init__(self, uri: str, target: str, options: dict[str, Any], common: SourceOptions) -> None:
        self.uri = redact(uri)
        self.target = target
        self.options = options
        self.common = common
        self.name = redact(common.name or uri)

    @property
    def policy(self) -> str:
        """``latest`` or ``every``: how the grabber hands frames over."""
        if self.common.frames != "auto":
            return self.common.frames
        return "latest" if self.live else "every"

    #: nominal frames per second, when the source knows it (set by ``open``)
    fps: float | None = None

    def open(self) -> None:
        """Open the source; raise :class:`SourceError` (one line, with the fix) when it cannot."""
        raise NotImplementedError

    def read(self) -> Read | None:
        """The next frame, or None at the end of the stream; raise :class:`StallError` after
        ``stall_timeout`` s without a frame, :class:`SourceError` on a read error."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device, file or connection (safe to call twice)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
