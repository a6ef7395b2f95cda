"""One grabber thread per source: open, read, hand frames over, reopen live sources that fail.

Two ways to hand frames over (the source's ``policy``):

- ``latest`` (live sources): one slot holding the newest frame. A frame the consumer has not
  taken when the next one arrives is overwritten and counted as dropped, never queued, so the
  consumer is never more than one frame behind the camera however slow it is (jetson-utils'
  ``RingBuffer::ReadLatestOnce``; the research notes measured 13 s of lag without it, 0.06 s with).
- ``every`` (files, folders): a short queue (:data:`QUEUE_FRAMES`); the grabber waits while it is
  full, so no frame is ever lost and memory stays bounded.

A live source that ends, stalls or fails to open is reopened after ``backoff * 2**attempt`` s
(at most ``backoff_max``), times a random factor in [0.75, 1.25] so that cameras that dropped
together do not reconnect in lockstep; each step is an :class:`~edge_committee.stream.types.Event`.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable

from edge_committee.errors import EdgeCommitteeError
from edge_committee.stream.sources.base import Source
from edge_committee.stream.types import Event, Frame, PermanentSourceError, StallError, redact

#: frames an ``every`` source may decode ahead of the consumer
QUEUE_FRAMES = 4
JITTER = 0.25

#: states: opening -> streaming -> (reconnecting -> opening ...) -> ended | failed | stopped
DONE_STATES = ("ended", "failed", "stopped")


class Grabber:
    """Drives one :class:`Source` in a daemon thread.

    Args:
        source: the source (not opened).
        wake: the condition every grabber of a pipeline notifies when it has a frame or changes
            state; the batcher waits on it.
        on_event: called (from this thread) with every :class:`Event`.
        rng: random generator for the reconnect jitter.
    """

    def __init__(self, source: Source, wake: threading.Condition, on_event: Callable[[Event], None],
                 rng: random.Random | None = None) -> None:
        self.source = source
        self.name = source.name
        self.policy = source.policy
        self.wake = wake
        self.on_event = on_event
        self.rng = rng or random.Random()
        self.state = "opening"
        self.state_since = time.monotonic()
        self.error: str | None = None
        self.captured = 0  #: frames read from the source
        self.dropped = 0  #: frames overwritten before the consumer took them (latest policy)
        self.stale = 0  #: frames the batcher found older than its staleness limit
        self.reconnects = 0  #: successful reopens
        self.reconnect_attempts = 0  #: reopens tried (each a ``reconnecting`` event)
        self.delivered = 0  #: frames taken by the consumer
        self.last_frame_mono: float | None = None
        self.period: float | None = None  #: smoothed time between captured frames, s
        self._dropped_since = 0
        self._latest: Frame | None = None
        self._queue: collections.deque[Frame] = collections.deque()
        self._stop = threading.Event()
        self._warned = False
        self._last_error: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"grab {self.name}", daemon=True)

    # ------------------------------------------------------------------ consumer side (holds wake)
    def has_frame(self) -> bool:
        return self._latest is not None or bool(self._queue)

    def take(self) -> Frame | None:
        """The newest frame once (latest) or the oldest queued one (every); None when there is none.
        Call with ``wake`` held."""
        if self._queue:
            frame = self._queue.popleft()
            self.wake.notify_all()  # room in the queue
        else:
            frame, self._latest = self._latest, None
        if frame is not None:
            frame.dropped = self._dropped_since
            self._dropped_since = 0
            self.delivered += 1
        return frame

    def count_stale(self) -> None:
        """The batcher dropped a frame for age; it counts as dropped for this source."""
        self.stale += 1
        self._dropped_since += 1

    @property
    def done(self) -> bool:
        """The source will give no more frames and none is waiting."""
        return self.state in DONE_STATES and not self.has_frame()

    @property
    def streaming(self) -> bool:
        return self.state == "streaming"

    def check(self, now: float) -> None:
        """Warn (once per state) about a source stuck opening or silent well past its timeouts, in
        case the library blocks longer than asked (a read cannot be interrupted from here)."""
        c = self.source.common
        if self._warned:
            return
        if self.state == "opening" and now - self.state_since > c.open_timeout + 1.0:
            self._warned = True
            self._event("warning", f"not open after {now - self.state_since:.0f} s (open timeout "
                                   f"{c.open_timeout:g} s); still waiting for the library")
        elif self.state == "streaming" and self.source.live:
            since = max(self.last_frame_mono or 0.0, self.state_since)  # this connection's last frame
            if now - since > 2 * c.stall_timeout + 1.0:
                self._warned = True
                self._event("warning", f"no frame for {now - since:.0f} s (stall timeout {c.stall_timeout:g} s); "
                                       "still waiting for the library's read timeout")

    # ------------------------------------------------------------------------------ control
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the thread to stop (it finishes its current read, then closes the source)."""
        self._stop.set()
        with self.wake:
            self.wake.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the thread; False if it is still blocked in a read."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    # --------------------------------------------------------------------------- the thread
    def _event(self, event: str, message: str = "", **data) -> None:
        self.on_event(Event(event, self.name, redact(message), data or None))

    def _set_state(self, state: str, error: str | None = None) -> None:
        with self.wake:
            self.state = state
            self.state_since = time.monotonic()
            self._warned = False
            if error is not None:
                self.error = redact(error)
            self.wake.notify_all()

    def _deliver(self, image, pts: float | None) -> None:
        now = time.monotonic()
        frame = Frame(self.name, self.captured, image, time.time(), now, pts)
        self.captured += 1
        if self.last_frame_mono is not None:
            dt = now - self.last_frame_mono
            self.period = dt if self.period is None else 0.9 * self.period + 0.1 * dt
        self.last_frame_mono = now
        with self.wake:
            if self.policy == "latest":
                if self._latest is not None:
                    self.dropped += 1
                    self._dropped_since += 1
                self._latest = frame
            else:
                while len(self._queue) >= QUEUE_FRAMES and not self._stop.is_set():
                    self.wake.wait(0.1)
                self._queue.append(frame)
            self.wake.notify_all()

    def _pump(self) -> tuple[str, str]:
        """Read until the stream ends, stalls, fails or we are stopped: (outcome, message)."""
        while not self._stop.is_set():
            try:
                got = self.source.read()
            except StallError as exc:
                return "stall", str(exc)
            except EdgeCommitteeError as exc:
                return "error", str(exc)
            if got is None:
                return "end", ""
            self._deliver(*got)
        return "stopped", ""

    def _backoff(self, attempt: int) -> bool:
        """Sleep before reopen ``attempt`` (0-based); False when stopped or out of attempts."""
        c = self.source.common
        if c.max_reconnects and attempt >= c.max_reconnects:
            last = f" (last: {self._last_error})" if self._last_error else ""
            self._set_state("failed", f"source {self.source.uri}: gave up after {attempt} reconnect attempts "
                                      f"(max_reconnects){last}; check the camera or raise --max-reconnects")
            self._event("error", self.error)
            return False
        delay = min(c.backoff_max, c.backoff * 2 ** attempt) * self.rng.uniform(1 - JITTER, 1 + JITTER)
        self._set_state("reconnecting")
        self.reconnect_attempts += 1
        self._event("reconnecting", f"reopening in {delay:.2f} s (attempt {attempt + 1})",
                    attempt=attempt + 1, delay_s=round(delay, 3))
        return not self._stop.wait(delay)

    def _open(self) -> EdgeCommitteeError | None:
        """Open the source: None on success, else the error."""
        self._set_state("opening")
        try:
            self.source.open()
        except EdgeCommitteeError as exc:
            self.source.close()
            return exc
        return None

    def _run(self) -> None:
        src, attempt, down_since = self.source, 0, None
        try:
            while not self._stop.is_set():
                exc = self._open()
                if exc is not None:
                    err = self._last_error = redact(str(exc))
                    self._event("error", err)
                    # what waiting cannot heal fails at once; so does a first open of a local
                    # source (a camera that is not there); only network sources retry by default
                    if (not src.live or isinstance(exc, PermanentSourceError)
                            or (down_since is None and not src.retry_open)):
                        self._set_state("failed", err)
                        return
                    if not self._backoff(attempt):
                        break
                    attempt += 1
                    continue
                if down_since is None:
                    self._event("open", f"{src.kind} source open ({self.policy} frames)", kind=src.kind,
                                policy=self.policy, fps=src.fps)
                else:
                    self.reconnects += 1
                    self._event("reconnect", f"reopened after {time.monotonic() - down_since:.2f} s down",
                                reconnects=self.reconnects, down_s=round(time.monotonic() - down_since, 3))
                self._set_state("streaming")
                before = self.captured
                outcome, message = self._pump()
                src.close()
                self._last_error = message or None
                if outcome == "stopped":
                    break
                if not src.live:
                    if outcome == "end":
                        self._set_state("ended")
                        self._event("end", f"{self.captured} frames", frames=self.captured)
                    else:
                        self._set_state("failed", message)
                        self._event("error", message)
                    return
                # a live source: an end of stream is a dropped camera, not the end of the work
                self._event("eos" if outcome == "end" else outcome,
                            message or f"stream ended after {self.captured - before} frames; reconnecting")
                down_since = time.monotonic()
                attempt = 0 if self.captured > before else attempt
                if not self._backoff(attempt):
                    break
                attempt += 1
            if self.state not in DONE_STATES:
                self._set_state("stopped")
        except Exception as exc:  # a bug: report it as the source's failure, keep the traceback in the log
            import logging

            logging.getLogger(__name__).exception("grabber %s crashed", self.name)
            self._set_state("failed", f"source {src.uri}: internal error {type(exc).__name__}: {exc}")
            self._event("error", self.error)
        finally:
            src.close()
