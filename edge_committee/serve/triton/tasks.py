"""What an exported cascade model answers, per task: its output tensors, its loop, its arrays.

``cascade.json`` names the bundle's ``task`` (``classification`` when absent, as in exports before
segmentation). Each task is one :class:`TaskKind`:

- ``outputs(spec)``: the cascade model's output tensors (``config.pbtxt``; dims without the batch);
- ``loop(spec, runners, preprocessing)``: the SDK loop the BLS model runs over the member runners
  (``run(images) -> prediction``, ``activate()``, ``deactivate()``);
- ``arrays(prediction)``: every output as a batch-first NumPy array of the configured type;
- ``member_output_rank``: the rank of a member's logits (2: ``(N, C)``, 4: ``(N, C, h, w)``);
- ``member_dims(pp)``: a member model's input dims without the batch (fixed, or -1 where later
  stages run on other sizes, as a tile cascade's tile windows).

Classification answers ``labels``, ``confidence``, ``exit_stage``, ``flags`` ``[N, 1]`` and
``probs`` ``[N, C]``; segmentation (a tile cascade, :mod:`edge_committee.runtime.tiles`) answers
``class_map`` ``[N, H, W]``, ``probs`` ``[N, C, H, W]``, ``histogram`` ``[N, C]`` (pixels per
class), ``tile_confidence``, ``tile_exit_stage``, ``tile_flags`` ``[N, T]`` and ``tiles_deferred``
``[N, 1]``. A client asks for the outputs it needs (``probs`` is the large one). A video kind
(clips in, ``(N, C)`` per clip out) is one more entry of :data:`KINDS`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from edge_committee.cascade.reference import gate_step
from edge_committee.cascade.tiles import TileGrid
from edge_committee.errors import EdgeCommitteeError
from edge_committee.runtime.cascade import HostLoop
from edge_committee.runtime.tiles import TileHostLoop, run_in_chunks
from edge_committee.serve.triton.config import TensorConfig

#: the class names file beside a model's ``config.pbtxt`` (``label_filename``)
LABELS_FILE = "labels.txt"


@dataclasses.dataclass(frozen=True)
class TaskKind:
    """How the cascade model of one task is configured and answers (see the module docstring)."""

    name: str
    outputs: Callable[[dict], tuple[TensorConfig, ...]]
    loop: Callable[[dict, list, list], object]
    arrays: Callable[[object], dict[str, np.ndarray]]
    member_output_rank: int = 2
    member_dims: Callable[[object], tuple[int, ...]] = lambda pp: tuple(pp.input_shape(1)[1:])

    def run(self, loop, images):
        """One batch through ``loop`` (a tile cascade in bounded chunks)."""
        return run_in_chunks(loop, images) if isinstance(loop, TileHostLoop) else loop.run(images)


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


def _dense_dims(pp) -> tuple[int, ...]:
    """A segmentation member's input: its channels, any height and width (frames, then tile windows)."""
    return (pp.channels, -1, -1)


KINDS: dict[str, TaskKind] = {
    "classification": TaskKind("classification", _cls_outputs, _cls_loop, _cls_arrays),
    "segmentation": TaskKind("segmentation", _seg_outputs, _seg_loop, _seg_arrays, member_output_rank=4,
                             member_dims=_dense_dims),
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
