"""Clip cascades for video classification, in NumPy: each member sees its own view of one decoded clip.

X3D-style members differ in how much of a clip they look at: frames, temporal stride and spatial
size (Wang et al., "Wisdom of Committees", ICLR 2022, cascade X3D members; the study in
``research/dense_committees.md`` measured members that see 4 frames at 32x32 vs 16 frames at 64x64).
A :class:`ClipView` says which frames of a decoded clip a member takes; its
:class:`~edge_committee.spec.preprocess.Preprocessing` says how each frame becomes its input. The
cascade itself is the classification cascade (:func:`edge_committee.cascade.reference.gate_step`):
member k runs on the views of the clips still active only, its softmax is averaged in, and a clip
exits when the confidence of the running mean is ``>=`` the stage's threshold.

This module is the reference: the spec (``task: video``, :mod:`edge_committee.spec.video`), ``build``
(:mod:`edge_committee.pipeline_video`) and the runtime (:mod:`edge_committee.runtime.clips`) are
tested against it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from edge_committee.cascade.reference import CascadeResult, GateState, _check_thresholds, check_confidence_name, gate_step


@dataclasses.dataclass(frozen=True)
class ClipView:
    """``frames`` frames, ``stride`` apart, centred in the clip (the X3D test-time temporal crop)."""

    frames: int
    stride: int = 1

    def __post_init__(self) -> None:
        if self.frames < 1 or self.stride < 1:
            raise ValueError(f"a clip view needs frames >= 1 and stride >= 1; got {self.frames}, {self.stride}")

    @property
    def span(self) -> int:
        """Frames from the view's first to its last frame: ``(frames - 1) * stride + 1``."""
        return (self.frames - 1) * self.stride + 1

    def to_dict(self) -> dict:
        return {"frames": self.frames, "stride": self.stride}

    def indices(self, clip_len: int) -> np.ndarray:
        """(frames,) frame indices into a clip of ``clip_len`` frames; a clip shorter than the view's span
        repeats its first and last frames (indices clamped)."""
        if clip_len < 1:
            raise ValueError("an empty clip has no frames to view")
        start = (clip_len - self.span) // 2
        return np.clip(start + self.stride * np.arange(self.frames), 0, clip_len - 1)


def clip_input(clips: np.ndarray, view: ClipView, preprocess: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Member input (N, C, T', H', W') float32 from decoded clips (N, T, H, W, C) uint8: the view's frames,
    each preprocessed (``preprocess``: uint8 (M, H, W, C) -> (M, C, H', W'), e.g. a Preprocessing)."""
    clips = np.asarray(clips)
    if clips.ndim != 5:
        raise ValueError(f"clips must be (N, T, H, W, C) uint8; got shape {clips.shape}")
    n = clips.shape[0]
    idx = view.indices(clips.shape[1])
    frames = clips[:, idx].reshape(n * len(idx), *clips.shape[2:])
    x = np.asarray(preprocess(frames), np.float32)
    return np.ascontiguousarray(x.reshape(n, len(idx), *x.shape[1:]).transpose(0, 2, 1, 3, 4))


def run_clip_cascade(clips: np.ndarray, members: Sequence[Callable[[np.ndarray], np.ndarray]],
                     views: Sequence[ClipView], preprocessing: Sequence[Callable[[np.ndarray], np.ndarray]],
                     thresholds: Sequence[float], kind: str = "max_prob") -> CascadeResult:
    """Classify clips (N, T, H, W, C) with a cascade whose member k maps its view (n, C, T', H', W') to logits
    (n, K); each stage builds views for the active clips only."""
    check_confidence_name(kind)
    if not (len(members) == len(views) == len(preprocessing)) or not members:
        raise ValueError(f"got {len(members)} members, {len(views)} views and {len(preprocessing)} preprocessings; "
                         "give one of each per member")
    k_total = len(members)
    t = _check_thresholds(thresholds, k_total)
    state = None
    for k, (member, view, pp) in enumerate(zip(members, views, preprocessing)):
        if state is not None and state.active.size == 0:
            break
        active = np.arange(len(clips)) if state is None else state.active
        logits = np.asarray(member(clip_input(np.asarray(clips)[active], view, pp)))
        if state is None:
            state = GateState.start(len(clips), logits.shape[1])
        gate_step(state, logits, k, k_total, t[k], kind)
    return CascadeResult(label=state.label, probs=state.mean_probs(), confidence=state.conf,
                         exit_stage=state.exit_stage, flag=state.flag)


def clip_macs(member_macs: Sequence[float], exit_stage: np.ndarray) -> float:
    """Mean MACs per clip: member k's MACs (on its own view) times the share of clips that reach stage k."""
    exit_stage = np.asarray(exit_stage)
    return float(sum(m * np.mean(exit_stage >= k) for k, m in enumerate(member_macs)))
