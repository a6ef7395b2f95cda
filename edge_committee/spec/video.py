"""The clip of a video committee and each member's view of it (``task: video``).

.. code-block:: yaml

    task: video
    video:
      clip_frames: 16             # frames per decoded clip (a live source slides a window of this many)
    members:
      - name: small
        onnx: small.onnx
        view: {frames: 4, stride: 4}          # 4 frames, 4 apart, centred in the clip
        preprocessing: {size: [32, 32], color: gray, mean: [0.3], std: [0.25]}
      - name: large
        onnx: large.onnx
        view: {frames: 16}                    # stride 1 by default
        preprocessing: {size: [64, 64], color: gray, mean: [0.3], std: [0.25]}

Each member sees its own view of ONE decoded clip, as X3D members do: ``view`` picks the frames
(``frames`` of them, ``stride`` apart, centred in the clip; see
:class:`~edge_committee.cascade.clips.ClipView`), ``preprocessing`` turns each picked frame into
the member's resolution and normalization. A member is an ONNX file whose input is
``(N, C, T, H, W)`` float (``T`` = ``view.frames``, ``C, H, W`` from its preprocessing; the
torchvision/X3D layout) and whose output is ``(N, classes)`` logits. The cascade is the
classification cascade over clips (:mod:`edge_committee.cascade.clips`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from edge_committee.cascade.clips import ClipView
from edge_committee.errors import SpecError


@dataclasses.dataclass(frozen=True)
class VideoSpec:
    """The decoded clip every member takes its view from."""

    clip_frames: int

    def to_dict(self) -> dict:
        return {"clip_frames": self.clip_frames}


def _int(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where}: {value!r} must be an integer >= {minimum}")
    return value


def parse_video(raw: Any, task: str) -> VideoSpec | None:
    """The ``video`` mapping: required for ``task: video``, refused otherwise."""
    if task != "video":
        if raw is not None:
            raise SpecError(f"video: given for task {task!r}; add 'task: video' or remove the key")
        return None
    if raw is None:
        raise SpecError("video: missing; a video committee needs its clip length, e.g. 'video: {clip_frames: 16}'")
    if not isinstance(raw, Mapping):
        raise SpecError(f"video: expected a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"clip_frames"}, key=str)
    if unknown:
        raise SpecError(f"video: unknown key {unknown[0]!r}; allowed keys: clip_frames")
    if "clip_frames" not in raw:
        raise SpecError("video: missing key 'clip_frames' (frames per decoded clip, e.g. 16)")
    return VideoSpec(clip_frames=_int(raw["clip_frames"], "video.clip_frames"))


def parse_view(raw: Any, where: str, task: str) -> ClipView | None:
    """A member's ``view``: required for ``task: video``, refused otherwise."""
    if task != "video":
        if raw is not None:
            raise SpecError(f"{where}.view: a clip view is for 'task: video' members; remove it or set task: video")
        return None
    if raw is None:
        raise SpecError(f"{where}: missing key 'view' (its frames of the clip, e.g. view: {{frames: 4, stride: 4}})")
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}.view: expected a mapping such as {{frames: 4, stride: 4}}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"frames", "stride"}, key=str)
    if unknown:
        raise SpecError(f"{where}.view: unknown key {unknown[0]!r}; allowed keys: frames, stride")
    if "frames" not in raw:
        raise SpecError(f"{where}.view: missing key 'frames' (how many frames of the clip the member sees)")
    return ClipView(_int(raw["frames"], f"{where}.view.frames"), _int(raw.get("stride", 1), f"{where}.view.stride"))


def check_video_members(members, video: VideoSpec) -> None:
    """Every view fits in the clip; members are ONNX files taking NCHW frames (stacked as NCTHW)."""
    for m in members:
        span = m.view.span
        if span > video.clip_frames:
            raise SpecError(f"members ({m.name}).view: {m.view.frames} frames {m.view.stride} apart span {span} "
                            f"frames, longer than the clip (video.clip_frames {video.clip_frames}); lower frames or "
                            f"stride, or raise clip_frames to {span}")
        if m.kind != "onnx":
            raise SpecError(f"members ({m.name}): a video member is an ONNX file taking (N, C, T, H, W) clips; export "
                            "it with torch.onnx.export and give 'onnx:'")
        if m.preprocessing.layout != "NCHW":
            raise SpecError(f"members ({m.name}).preprocessing.layout: a video member's frames are stacked as "
                            "(N, C, T, H, W); set layout: NCHW")
