"""What an exported cascade model answers, per task: its output tensors, its loop, its arrays.

``cascade.json`` names the bundle's ``task`` (``classification`` when absent, as in exports before
segmentation). Each task is one :class:`TaskKind`:

- ``outputs(spec)``: the cascade model's output tensors (``config.pbtxt``; dims without the batch);
- ``loop(spec, runners, preprocessing)``: the SDK loop the BLS model runs over the member runners
  (``run(images) -> prediction``, ``activate()``, ``deactivate()``);
- ``arrays(prediction)``: every output as a batch-first NumPy array of the configured type;
- ``member_output_rank``: the rank of a member's logits (2: ``(N, C)``, 4: ``(N, C, h, w)``);
- ``member_dims(pp, member)``: a member model's input dims without the batch (fixed, or -1 where later
  stages run on other sizes, as a tile cascade's tile windows); ``member`` is its manifest entry;
- ``input``, ``input_dims``, ``input_text``: the cascade model's uint8 input (name, dims without the
  batch, how a summary line describes it), and ``check(x, spec)``: why a request's input cannot be
  run (one line), or None.

Classification answers ``labels``, ``confidence``, ``exit_stage``, ``flags`` ``[N, 1]`` and
``probs`` ``[N, C]``; segmentation (a tile cascade, :mod:`edge_committee.runtime.tiles`) answers
``class_map`` ``[N, H, W]``, ``probs`` ``[N, C, H, W]``, ``histogram`` ``[N, C]`` (pixels per
class), ``tile_confidence``, ``tile_exit_stage``, ``tile_flags`` ``[N, T]`` and ``tiles_deferred``
``[N, 1]``. A client asks for the outputs it needs (``probs`` is the large one). Video (a clip
cascade, :mod:`edge_committee.runtime.clips`) takes ``clips`` uint8 ``[N, T, H, W, C]`` and answers
as classification does, one row per clip; each member model takes its own view
``(C, frames, H', W')``, which the BLS model cuts from the clips with the member's
:class:`~edge_committee.cascade.clips.ClipView` and preprocessing.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from edge_committee.cascade.reference import gate_step
from edge_committee.cascade.tiles import TileGrid
from edge_committee.errors import EdgeCommitteeError
from edge_committee.cascade.clips import ClipView
from edge_committee.runtime.cascade import HostLoop
from edge_committee.runtime.clips import ClipHostLoop, run_clips_in_chunks
from edge_committee.runtime.tiles import TileHostLoop, run_in_chunks
from edge_committee.serve.triton.config import TensorConfig

#: the class names file beside a model's ``config.pbtxt`` (``label_filename``)
LABELS_FILE = "labels.txt"


def _check_pixels(x: np.ndarray, name: str, dims: str) -> str | None:
    """Why a request's ``name`` tensor is not uint8 pixels of shape [``dims``, 1|3] with no empty
    dimension, or None."""
    if x.dtype != np.uint8:
        return f"'{name}' must be uint8 {name} (raw pixels 0..255); got {x.dtype}"
    if x.ndim != dims.count(",") + 2 or x.shape[-1] not in (1, 3):
        return (f"'{name}' must be uint8 {name} of shape [{dims}, 1|3]; got shape {list(x.shape)} "
                f"(send grayscale as [{dims}, 1])")
    if 0 in x.shape:
        return f"'{name}' has an empty dimension: shape {list(x.shape)}"
    return None


def check_images(x: np.ndarray, spec: dict | None = None) -> str | None:
    """Why a request's ``images`` (N, H, W, C) cannot be run, or None when they can."""
    return _check_pixels(x, "images", "N, H, W")


def _frame_dims(pp, member: dict) -> tuple[int, ...]:
    return tuple(pp.input_shape(1)[1:])


@dataclasses.dataclass(frozen=True)
class TaskKind:
    """How the cascade model of one task is configured and answers (see the module docstring)."""

    name: str
    outputs: Callable[[dict], tuple[TensorConfig, ...]]
    loop: Callable[[dict, list, list], object]
    arrays: Callable[[object], dict[str, np.ndarray]]
    member_output_rank: int = 2
    member_dims: Callable[[object, dict], tuple[int, ...]] = _frame_dims
    input: str = "images"
    input_dims: tuple[int, ...] = (-1, -1, -1)
    input_text: str = "uint8 images [N, H, W, C]"
    check: Callable[[np.ndarray, dict], str | None] = check_images

    def run(self, loop, images):
        """One batch through ``loop`` (a tile cascade and a clip cascade in bounded chunks)."""
        if isinstance(loop, TileHostLoop):
            return run_in_chunks(loop, images)
        if isinstance(loop, ClipHostLoop):
            return _run_clips(loop, images)
        return loop.run(images)


# ----------------------------------------------------------------------------- classification
def _cls_outputs(spec: dict) -> tuple[TensorConfig, ...]:
    return (TensorConfig("labels", "TYPE_INT32", (1,)), TensorConfig("confidence", "TYPE_FP32", (1,)),
            TensorConfig("exit_stage", "TYPE_INT32", (1,)), TensorConfig("flags", "TYPE_INT32", (1,)),
            TensorConfig("probs", "TYPE_FP32", (len(spec["labels"]),), label_filename=LABELS_FILE))


def _cls_loop(spec: dict, runners: list, preprocessing: list) -> HostLoop:
    return HostLoop(runners, preprocessing, [float(t) for t in spec["thresholds"]], spec["confidence"],
                    list(spec["labels"]), gate_for(spec))


def gate_for(spec: dict):
    """The gate step of a ``cascade.json``: the reference, or a learned committee's stage combiners."""
    if not spec.get("combiner"):
        return gate_step
    from edge_committee.cascade.learned import Combiner, LearnedGate

    return LearnedGate([Combiner(np.asarray(d["weights"], np.float32), np.asarray(d["bias"], np.float32),
                                 tuple(d.get("members", ()))) for d in spec["combiner"]])


def _column(values, dtype) -> np.ndarray:
    a = np.asarray(values, dtype=dtype)
    return a if a.ndim == 2 else a[:, None]


def _cls_arrays(pred) -> dict[str, np.ndarray]:
    return {"labels": _column(pred.labels, np.int32), "confidence": _column(pred.confidence, np.float32),
            "exit_stage": _column(pred.exit_stage, np.int32), "flags": _column(pred.flags, np.int32),
            "probs": np.asarray(pred.probs, np.float32)}


# ------------------------------------------------------------------------------- segmentation
def _seg_outputs(spec: dict) -> tuple[TensorConfig, ...]:
    seg, c = spec["segmentation"], len(spec["labels"])
    h, w = seg["frame"]
    t = int(seg["tiles_per_frame"])
    return (TensorConfig("class_map", "TYPE_INT32", (h, w)), TensorConfig("probs", "TYPE_FP32", (c, h, w)),
            TensorConfig("histogram", "TYPE_INT64", (c,), label_filename=LABELS_FILE),
            TensorConfig("tile_confidence", "TYPE_FP32", (t,)), TensorConfig("tile_exit_stage", "TYPE_INT32", (t,)),
            TensorConfig("tile_flags", "TYPE_INT32", (t,)), TensorConfig("tiles_deferred", "TYPE_INT32", (1,)))


def _seg_loop(spec: dict, runners: list, preprocessing: list) -> TileHostLoop:
    seg = spec["segmentation"]
    grid = TileGrid(tuple(seg["tile"]), int(seg["margin"]))
    return TileHostLoop(runners, preprocessing, grid, [float(t) for t in spec["thresholds"]], seg["confidence"],
                        list(spec["labels"]))


def _seg_arrays(pred) -> dict[str, np.ndarray]:
    exits = np.asarray(pred.tile_exit_stage, np.int32)
    return {"class_map": np.asarray(pred.labels, np.int32), "probs": np.asarray(pred.probs, np.float32),
            "histogram": pred.histogram().astype(np.int64),
            "tile_confidence": np.asarray(pred.tile_confidence, np.float32), "tile_exit_stage": exits,
            "tile_flags": np.asarray(pred.tile_flags, np.int32),
            "tiles_deferred": (exits > 0).sum(axis=1, dtype=np.int32)[:, None]}


def _dense_dims(pp, member: dict) -> tuple[int, ...]:
    """A segmentation member's input: its channels, any height and width (frames, then tile windows)."""
    return (pp.channels, -1, -1)


# -------------------------------------------------------------------------------------- video
def _video_loop(spec: dict, runners: list, preprocessing: list) -> ClipHostLoop:
    views = [ClipView(**m["view"]) for m in spec["members"]]
    return ClipHostLoop(runners, views, preprocessing, [float(t) for t in spec["thresholds"]], spec["confidence"],
                        list(spec["labels"]), gate_for(spec))


def _view_dims(pp, member: dict) -> tuple[int, ...]:
    """A video member's input: (C, frames of its view, H, W) (the (N, C, T, H, W) layout of the spec)."""
    _, c, h, w = pp.input_shape(1)
    return (c, int(member["view"]["frames"]), h, w)


def check_clips(x: np.ndarray, spec: dict | None = None) -> str | None:
    """Why a request's ``clips`` (N, T, H, W, C) cannot be run, or None when they can (``spec``: the
    cascade.json, for the shortest clip the members' views take)."""
    why = _check_pixels(x, "clips", "N, T, H, W")
    if why is not None:
        return why
    span = max((ClipView(**m["view"]).span for m in (spec or {}).get("members", ())), default=1)
    if x.shape[1] < span:
        return f"'clips' of {x.shape[1]} frames; this committee's views span {span} frames: send at least {span}"
    return None


def _run_clips(loop: ClipHostLoop, clips):
    """Clips (N, T, H, W, C), or a list of clips of several shapes (requests batched together): each run
    of same-shaped clips in bounded chunks, the predictions joined in order."""
    if not isinstance(clips, list):
        return run_clips_in_chunks(loop, clips)
    parts, start = [], 0
    while start < len(clips):
        stop = start + 1
        while stop < len(clips) and clips[stop].shape == clips[start].shape:
            stop += 1
        parts.append(run_clips_in_chunks(loop, np.stack(clips[start:stop])))
        start = stop
    return parts[0] if len(parts) == 1 else join_predictions(parts)


def join_predictions(parts: list):
    """One :class:`~edge_committee.runtime.cascade.Prediction` of several, in order."""
    from edge_committee.runtime.cascade import Prediction

    return Prediction(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                        ("labels", "probs", "confidence", "exit_stage", "flags")), parts[0].label_names)


KINDS: dict[str, TaskKind] = {
    "classification": TaskKind("classification", _cls_outputs, _cls_loop, _cls_arrays),
    "segmentation": TaskKind("segmentation", _seg_outputs, _seg_loop, _seg_arrays, member_output_rank=4,
                             member_dims=_dense_dims),
    "video": TaskKind("video", _cls_outputs, _video_loop, _cls_arrays, member_dims=_view_dims, input="clips",
                      input_dims=(-1, -1, -1, -1), input_text="uint8 clips [N, T, H, W, C]", check=check_clips),
}


def task_kind(task: str | None) -> TaskKind:
    """The :class:`TaskKind` of a manifest's or ``cascade.json``'s ``task`` (None: classification)."""
    kind = KINDS.get(task or "classification")
    if kind is None:
        raise EdgeCommitteeError(f"task {task!r}: export-triton serves {', '.join(KINDS)} bundles so far")
    return kind


def describe_outputs(outputs: tuple[TensorConfig, ...]) -> str:
    """``labels [N, 1], probs [N, 11]``: for the export's summary line."""
    return ", ".join(f"{o.name} [N, {', '.join(str(d) for d in o.dims)}]" for o in outputs)
