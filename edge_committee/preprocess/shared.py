"""One batch's preprocessing across the members of a cascade: each piece of work done once.

The images are decoded once (the caller's uint8 batch). Members whose *resize geometry* coincides
(the same source size, target size, crop policy, interpolation and implementation, and the same
colour mix before the resize) share one resize: MobileNetV2 and EfficientNet-Lite0 (224, crop
0.875, bicubic) resize once and normalize twice. A later stage resizes only its survivors that no
earlier stage of the same geometry resized, and reads the rest from the earlier result.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from edge_committee.preprocess import cpu


@dataclasses.dataclass
class _Resized:
    values: np.ndarray | None  #: (N, H', W', C_r) for the whole batch, filled as samples are needed
    done: np.ndarray  #: (N,) bool


class SharedPreprocessing:
    """Call it with a member's ``Preprocessing`` and the indices of the samples still active.

    Args:
        images: the batch of raw uint8 images: an (N, H, W, C) array or a list of (H, W, C) arrays.
        mode: ``exact`` or ``fast`` for every member; None: each member's ``execution`` key.
    """

    def __init__(self, images: np.ndarray | Sequence[np.ndarray], mode: str | None = None) -> None:
        if mode is not None and mode not in cpu.MODES:
            raise ValueError(f"preprocessing mode {mode!r} is not known; use {' or '.join(cpu.MODES)}")
        self.images = images
        self.mode = mode
        self._resized: dict[tuple, _Resized] = {}
        #: resizes computed and reused, in samples (for tests and the benchmark)
        self.computed = 0
        self.reused = 0

    def __call__(self, pp, active: np.ndarray) -> np.ndarray:
        """The member input (float32) of the samples ``active`` (indices into the batch), in that order."""
        active = np.asarray(active, np.int64)
        mode = self.mode or pp.execution
        out = None
        for positions, shape in self._by_shape(active):
            plan = pp.plan(shape[:2], shape[2])
            values, channel_of = self._resize(pp, plan, mode, active[positions], shape)
            part = cpu.normalize(plan, values, channel_of)
            if out is None:
                out = np.empty((len(active), *part.shape[1:]), np.float32)
            out[positions] = part
        if out is None:
            return np.zeros(pp.input_shape(0), np.float32)
        return out

    def _by_shape(self, active: np.ndarray):
        if isinstance(self.images, np.ndarray):
            yield np.arange(len(active)), tuple(self.images.shape[1:])
            return
        groups: dict[tuple, list[int]] = {}
        for pos, i in enumerate(active):
            groups.setdefault(tuple(self.images[i].shape), []).append(pos)
        for shape, positions in groups.items():
            yield np.asarray(positions, np.int64), shape

    def _stack(self, index: np.ndarray) -> np.ndarray:
        if isinstance(self.images, np.ndarray):
            return self.images[index]
        return np.stack([self.images[i] for i in index])

    def _resize(self, pp, plan, mode: str, index: np.ndarray, shape: tuple) -> tuple[np.ndarray, tuple[int, ...]]:
        key = (resize_key(pp, mode), shape)
        entry = self._resized.get(key)
        if entry is None:
            entry = self._resized[key] = _Resized(None, np.zeros(len(self.images), bool))
        need = index[~entry.done[index]]
        channel_of = cpu.channels(plan)
        if len(need):
            values, _ = cpu.resize(plan, self._stack(need), mode)
            if entry.values is None:
                entry.values = np.empty((len(self.images), *values.shape[1:]), values.dtype)
            entry.values[need] = values
            entry.done[need] = True
        self.computed += len(need)
        self.reused += len(index) - len(need)
        return entry.values[index], channel_of


def resize_key(pp, mode: str) -> tuple:
    """What decides a member's resized pixels (not its normalization, layout or channel selection)."""
    mix = pp.color == "gray"  # a luma before the resize; rgb/BGR are selections applied after it
    return (tuple(pp.size), pp.resize, float(pp.crop_pct), pp.interpolation, pp.resize_impl, pp.antialias,
            pp.resize_size, pp.color if mix else None, mode)
