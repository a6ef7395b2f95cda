"""Run a video bundle's clip cascade: each member on its own view of the clips still active.

The loop (:class:`ClipHostLoop`) is the reference's loop (:func:`edge_committee.cascade.clips.run_clip_cascade`)
over member runners and the classification gate step (the C++ gate when the extension is built,
else :func:`edge_committee.cascade.reference.gate_step`): stage ``k`` builds member ``k``'s view
(its frames of the clip, each preprocessed) of the active clips only, runs ONE batched call, and the
gate averages its probabilities in and lets confident clips exit.

Clips are raw uint8 ``(N, T, H, W)`` or ``(N, T, H, W, C)`` arrays (C = 1 or 3), a ``.npy`` file
holding one, or a video file (decoded by the stream file reader, PyAV) cut into consecutive clips
of the bundle's ``clip_frames`` (see :func:`clips_from_video`).
"""

from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edge_committee.backend import runner_for
from edge_committee.bundle import read_manifest
from edge_committee.cascade.clips import ClipView, clip_input
from edge_committee.cascade.reference import GateState
from edge_committee.errors import BundleError, EdgeCommitteeError
from edge_committee.runtime.cascade import ExecutorLifecycle, Prediction, RunnerLoop, _gate_step_fn
from edge_committee.spec.preprocess import Preprocessing

#: file suffixes read as .npy arrays; anything else is opened as a video file
NPY_SUFFIXES = (".npy",)
#: most float32 values one member input holds (64 MiB): longer batches of clips run in chunks
CHUNK_VALUES = 1 << 24


def clips_per_call(views: Sequence[ClipView], preprocessing: Sequence[Preprocessing]) -> int:
    """Clips per member call so that no member's input exceeds :data:`CHUNK_VALUES` values."""
    per_clip = max(pp.channels * v.frames * pp.size[0] * pp.size[1] for v, pp in zip(views, preprocessing))
    return max(1, CHUNK_VALUES // per_clip)


def as_clips(clips, min_frames: int = 1) -> np.ndarray:
    """Raw clips as a checked (N, T, H, W, C) uint8 array (``min_frames``: the longest view's span)."""
    if isinstance(clips, (list, tuple)):
        if not clips:
            raise EdgeCommitteeError("predict got an empty list of clips")
        shapes = {np.shape(c) for c in clips}
        if len(shapes) != 1:
            raise EdgeCommitteeError(f"predict got clips of different shapes {sorted(shapes)[:3]}; give clips of one "
                                     "shape per call")
        clips = np.stack([np.asarray(c) for c in clips])
    clips = np.asarray(clips)
    if clips.dtype != np.uint8:
        raise EdgeCommitteeError(f"predict expects raw uint8 clips (0..255); got dtype {clips.dtype}; pass the "
                                 "decoded frames, not a preprocessed tensor: each member makes its own view")
    if clips.ndim == 4:
        clips = clips[..., None]
    if clips.ndim != 5 or clips.shape[-1] not in (1, 3):
        raise EdgeCommitteeError(f"predict expects clips of shape (N, T, H, W) or (N, T, H, W, 1|3); got {clips.shape}")
    if clips.shape[0] and 0 in clips.shape[2:4]:
        raise EdgeCommitteeError(f"predict got empty frames in clips of shape {clips.shape}")
    if clips.shape[0] and clips.shape[1] < min_frames:
        raise EdgeCommitteeError(f"predict got clips of {clips.shape[1]} frames; this committee's views span "
                                 f"{min_frames} frames: give clips of at least {min_frames} frames")
    return clips


def iter_video_clips(path: str | os.PathLike, clip_frames: int, hop: int | None = None
                     ) -> Iterator[tuple[int, np.ndarray]]:
    """(index of the clip's first frame, clip (clip_frames, H, W, C) uint8) of a video file, in order.

    Frames are decoded one at a time (PyAV, the stream file reader) into a window of ``clip_frames``;
    clip ``i`` holds frames ``i * hop .. i * hop + clip_frames - 1`` (``hop`` default ``clip_frames``:
    consecutive clips), so memory holds one clip however long the video. A tail shorter than a clip
    is left out; a video shorter than one clip is an error."""
    from edge_committee.stream.uri import open_source

    hop = hop or clip_frames
    if hop < 1 or clip_frames < 1:
        raise EdgeCommitteeError(f"clip_frames ({clip_frames}) and hop ({hop}) must be >= 1")
    src = open_source(str(path))
    src.open()
    window: collections.deque = collections.deque(maxlen=clip_frames)
    count = 0
    try:
        while (got := src.read()) is not None:
            window.append(got[0])
            count += 1
            start = count - clip_frames
            if start >= 0 and start % hop == 0:
                yield start, np.stack(window)
    finally:
        src.close()
    if count < clip_frames:
        raise EdgeCommitteeError(f"{path}: {count} frames, fewer than one clip of {clip_frames}")


def clips_from_video(path: str | os.PathLike, clip_frames: int, hop: int | None = None,
                     max_clips: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(clips (N, clip_frames, H, W, C) uint8, (N,) index of each clip's first frame) from a video file: the
    first ``max_clips`` (default all) clips of :func:`iter_video_clips`, stacked."""
    starts, clips = [], []
    for start, clip in iter_video_clips(path, clip_frames, hop):
        starts.append(start)
        clips.append(clip)
        if max_clips is not None and len(clips) >= max_clips:
            break
    return np.stack(clips), np.asarray(starts)


def read_clips(path: str | os.PathLike, clip_frames: int, mmap: bool = False) -> np.ndarray:
    """Clips from a ``.npy`` file ((N, T, H, W[, C]) uint8; ``mmap``: memory-mapped) or a video file
    (consecutive clips)."""
    p = Path(path)
    if not p.is_file():
        raise EdgeCommitteeError(f"clip file not found: {p}")
    if p.suffix.lower() in NPY_SUFFIXES:
        try:
            return np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as exc:
            raise EdgeCommitteeError(f"cannot read {p}: {exc}") from None
    return clips_from_video(p, clip_frames)[0]


def run_clips_in_chunks(loop: "ClipHostLoop", clips: np.ndarray) -> Prediction:
    """``loop.run`` over checked clips, in chunks of :func:`clips_per_call` clips (so memory stays bounded),
    with the same result; ``loop.clips_run`` then counts the clips each member ran on over all chunks."""
    step = clips_per_call(loop.views, loop.preprocessing)
    if len(clips) <= step:
        return loop.run(clips)
    parts, runs = [], []
    for i in range(0, len(clips), step):  # each member's input stays within CHUNK_VALUES
        parts.append(loop.run(clips[i:i + step]))
        runs.append(loop.clips_run)
    loop.clips_run = [sum(r) for r in zip(*runs)]
    return Prediction(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                        ("labels", "probs", "confidence", "exit_stage", "flags")), loop.labels)


class ClipHostLoop(RunnerLoop):
    """The clip cascade over member runners and a gate step (see the module docstring)."""

    def __init__(self, runners, views: Sequence[ClipView], preprocessing: Sequence[Preprocessing],
                 thresholds: Sequence[float], confidence: str, labels: Sequence[str], gate_step_fn) -> None:
        self.runners = list(runners)
        self.views, self.preprocessing = list(views), list(preprocessing)
        self.thresholds, self.confidence, self.labels = list(thresholds), confidence, list(labels)
        self.gate_step = gate_step_fn
        #: clips each member ran on in the last call
        self.clips_run: list[int] = []

    def run(self, clips: np.ndarray) -> Prediction:
        n, k_total = len(clips), len(self.runners)
        state = GateState.start(n, len(self.labels))
        self.clips_run = []
        for k, (runner, view, pp) in enumerate(zip(self.runners, self.views, self.preprocessing)):
            if state.active.size == 0:
                self.clips_run += [0] * (k_total - k)
                break
            self.clips_run.append(int(state.active.size))
            logits = runner.infer(clip_input(clips[state.active], view, pp))
            t = self.thresholds[k] if k < k_total - 1 else float("inf")
            self.gate_step(state, logits, k, k_total, t, self.confidence)
        return Prediction(state.label, state.mean_probs(), state.conf, state.exit_stage, state.flag, self.labels)


class VideoModel(ExecutorLifecycle):
    """A loaded video bundle (``task: video``). Use as a context manager, or call :meth:`close`.

    Args:
        root: the bundle folder.
        backend: a member backend (``onnxrt``, the default) run by the host loop.
        threads: backend threads (ONNX Runtime intra-op).
        verify: check every checksum on load (default True).
        gate: ``auto`` (the C++ gate when the extension is built, else NumPy) or ``numpy``.
        preprocess: ``exact`` or ``fast`` CPU preprocessing of every member's frames; None (default):
            each member's ``execution`` key.
    """

    def __init__(self, root: str | os.PathLike, backend: str = "onnxrt", threads: int | None = None,
                 verify: bool = True, gate: str = "auto", preprocess: str | None = None, **options) -> None:
        from edge_committee.backend import MEMBER_BACKENDS

        self.root = Path(root)
        self.manifest = read_manifest(self.root, verify=verify)
        if self.manifest.get("task") != "video":
            task = self.manifest.get("task", "classification")
            raise BundleError(f"{self.root}: not a video bundle (task {task!r}); load it with edge_committee.load")
        c = self.manifest["cascade"]
        by_name = {m["name"]: m for m in self.manifest["members"]}
        self.members: list[str] = list(c["members"])
        self.thresholds = [float(t) for t in c["thresholds"]][: len(self.members) - 1]
        self.confidence: str = c["confidence"]
        self.labels: list[str] = list(self.manifest["labels"])
        self.clip_frames = int(self.manifest["video"]["clip_frames"])
        self.views = [ClipView(**by_name[n]["view"]) for n in self.members]
        self.preprocessing = [Preprocessing.from_dict(by_name[n]["preprocessing"]) for n in self.members]
        if preprocess not in (None, "exact", "fast"):
            raise EdgeCommitteeError(f"preprocess {preprocess!r} is not known; use 'exact' or 'fast'")
        if preprocess is not None:
            self.preprocessing = [dataclasses.replace(pp, execution=preprocess) for pp in self.preprocessing]
        if gate not in ("auto", "numpy"):
            raise EdgeCommitteeError(f"gate {gate!r} is not known; use 'auto' or 'numpy'")
        self._gate, self.gate_backend = _gate_step_fn(gate)
        if backend not in MEMBER_BACKENDS:
            raise EdgeCommitteeError(f"backend {backend!r} cannot run a video bundle yet; use "
                                     f"{', '.join(MEMBER_BACKENDS)}")
        self.backend = backend
        runners = [runner_for(backend, self.root / by_name[n]["file"], name=n, threads=threads, **options)
                   for n in self.members]
        self.executor = ClipHostLoop(runners, self.views, self.preprocessing, self.thresholds, self.confidence,
                                     self.labels, self._gate)
        self._active = False

    @property
    def min_frames(self) -> int:
        """The longest span of the members' views: the shortest clip this committee takes."""
        return max(v.span for v in self.views)

    def predict(self, clips) -> Prediction:
        """Classify raw uint8 clips: (N, T, H, W[, C]) (or a list of (T, H, W[, C])), or a path to a
        ``.npy`` file or a video file (cut into consecutive clips of ``clip_frames``). A long batch runs in
        chunks of :func:`clips_per_call` clips, so memory stays bounded."""
        if not self._active:
            self.__enter__()
        if isinstance(clips, (str, os.PathLike)):
            clips = read_clips(clips, self.clip_frames)
        return run_clips_in_chunks(self.executor, as_clips(clips, self.min_frames))
