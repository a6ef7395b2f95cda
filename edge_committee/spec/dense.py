"""The task a committee solves, and the tile grid of a segmentation committee.

.. code-block:: yaml

    task: segmentation            # classification (default) | segmentation | video (spec/video.py)
    segmentation:
      tile: 64                    # or [height, width]: must divide every member's input size
      margin: 8                   # context px per side a later member sees around a tile (default 0)
      confidence: mean_max_prob   # tile confidence (default), or p10_max_prob
      ignore_index: 255           # target value left out of mIoU (default: none)

Segmentation members take the frame (their ``preprocessing.size``, equal for all members) and
output ``(N, C, h, w)`` logits of any size, resized to the input's pixel grid (bilinear, half-pixel
centres). The first member runs on the whole frame; later members run on tile windows
(``tile + 2 * margin``), so they must accept that input size (a fully convolutional ONNX with
dynamic height and width). See :mod:`edge_committee.cascade.tiles`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from edge_committee.cascade.tiles import TILE_CONFIDENCE, TileGrid
from edge_committee.errors import SpecError

TASKS = ("classification", "segmentation", "video")


@dataclasses.dataclass(frozen=True)
class SegmentationSpec:
    """The tile grid and tile confidence of a segmentation committee."""

    tile: tuple[int, int]
    margin: int = 0
    confidence: str = "mean_max_prob"
    ignore_index: int | None = None

    @property
    def grid(self) -> TileGrid:
        return TileGrid(self.tile, self.margin)

    def to_dict(self) -> dict:
        return {"tile": list(self.tile), "margin": self.margin, "confidence": self.confidence,
                "ignore_index": self.ignore_index}


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where}: {value!r} must be an integer >= {minimum}")
    return value


def parse_task(value: Any) -> str:
    """The ``task`` key: one of :data:`TASKS`."""
    if value not in TASKS:
        raise SpecError(f"task: {value!r} is not allowed; use one of {', '.join(TASKS)}")
    return value


def parse_segmentation(raw: Any, task: str) -> SegmentationSpec | None:
    """The ``segmentation`` mapping: required for ``task: segmentation``, refused otherwise."""
    if task != "segmentation":
        if raw is not None:
            raise SpecError(f"segmentation: given for task {task!r}; add 'task: segmentation' or remove the key")
        return None
    if raw is None:
        raise SpecError("segmentation: missing; a segmentation committee needs its tile grid, "
                        "e.g. 'segmentation: {tile: 64, margin: 8}'")
    if not isinstance(raw, Mapping):
        raise SpecError(f"segmentation: expected a mapping, got {type(raw).__name__}")
    allowed = {"tile", "margin", "confidence", "ignore_index"}
    unknown = sorted(set(raw) - allowed, key=str)
    if unknown:
        raise SpecError(f"segmentation: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(allowed))}")
    if "tile" not in raw:
        raise SpecError("segmentation: missing key 'tile' (tile size in px: 64 or [height, width])")
    tile = raw["tile"]
    if isinstance(tile, list) and len(tile) == 2:
        tile = tuple(_int(x, "segmentation.tile", 1) for x in tile)
    elif isinstance(tile, int) and not isinstance(tile, bool):
        tile = (_int(tile, "segmentation.tile", 1),) * 2
    else:
        raise SpecError(f"segmentation.tile: {tile!r} must be a positive integer or [height, width]")
    conf = raw.get("confidence", "mean_max_prob")
    if conf not in TILE_CONFIDENCE:
        raise SpecError(f"segmentation.confidence: {conf!r} is not allowed; use one of {', '.join(TILE_CONFIDENCE)}")
    ignore = raw.get("ignore_index")
    return SegmentationSpec(tile=tile, margin=_int(raw.get("margin", 0), "segmentation.margin", 0),
                            confidence=conf, ignore_index=None if ignore is None else _int(ignore,
                                                                                           "segmentation.ignore_index", 0))


def check_segmentation_members(members, seg: SegmentationSpec) -> tuple[int, int]:
    """All members share one input size (the frame) that the tile divides; returns it (H, W)."""
    sizes = {tuple(m.preprocessing.size) for m in members}
    if len(sizes) != 1:
        listing = ", ".join(f"{m.name}: {list(m.preprocessing.size)}" for m in members)
        raise SpecError(f"members: a segmentation committee's members must share one input size (the frame); "
                        f"got {listing}; give every member the same preprocessing.size")
    (frame,) = sizes
    try:
        TileGrid(seg.tile, seg.margin).shape(frame)
    except ValueError as exc:
        raise SpecError(f"segmentation.tile: {exc}") from None
    layouts = {m.preprocessing.layout for m in members}
    if layouts != {"NCHW"}:
        raise SpecError("members: segmentation members take NCHW input; set preprocessing.layout: NCHW")
    return frame
