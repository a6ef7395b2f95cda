"""The plan: every number a runtime needs to reproduce one member's preprocessing for one source size.

:meth:`Preprocessing.plan` (the YAML-facing keys in ``spec/preprocess.py``) builds a
:class:`PreprocessPlan`; every executor runs it (:mod:`.cpu` on NumPy arrays, :mod:`.torch_exec`
on torch tensors, :mod:`.onnx_ops` as ONNX ops), and :meth:`PreprocessPlan.apply` is the reference
they are tested against.

A resize step is *banded*: output index ``o`` reads the ``taps`` consecutive inputs from
``start[o]`` with the weights ``taps[o]`` (crops and zero padding folded in: a cropped-away output
is never computed, a padded one has zero weights). Work is proportional to output x taps, never to
the full resized image, and no dense (n_out, n_in) matrix is stored (``weights`` builds one on
request, for tests).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from edge_committee.errors import EdgeCommitteeError
from edge_committee.preprocess import filters as _f

if TYPE_CHECKING:
    from edge_committee.spec.preprocess import Preprocessing

#: float64 working set of :meth:`PreprocessPlan.apply` per chunk of images (bytes)
_CHUNK_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class Geometry:
    """What a library call needs to redo the resize: resize to ``mid_hw``, then crop ``out_hw`` at ``offset``.

    ``offset`` may be negative (zero padding, torchvision's ``CenterCrop`` of a larger size).
    None on plans whose geometry is not "resize, then crop" (the ``tf`` preset crops first).
    """

    mid_hw: tuple[int, int]
    offset: tuple[int, int]
    interpolation: str
    impl: str
    antialias: bool


@dataclasses.dataclass(frozen=True, eq=False)
class ResizeStep:
    """Resize one spatial axis with a banded filter (see the module docstring).

    ``out[o] = sum_t taps[o, t] * in[start[o] + t]`` along ``axis``; ``round_clip``: afterwards round
    half up and clip to 0..255, as a pipeline working on uint8 images (PIL) does between passes.
    """

    axis: str  #: ``h`` (rows) or ``w`` (columns)
    start: np.ndarray  #: (n_out,) int32, first input index read by each output index
    taps: np.ndarray  #: (n_out, T) float64 weights (PIL's are exact multiples of 2**-22)
    n_in: int  #: input length along ``axis``
    round_clip: bool = False

    @property
    def n_out(self) -> int:
        return int(self.start.shape[0])

    @property
    def weights(self) -> np.ndarray:
        """The dense (n_out, n_in) float64 matrix of this step (for tests and checks; never executed)."""
        w = np.zeros((self.n_out, self.n_in), np.float64)
        rows = np.repeat(np.arange(self.n_out), self.taps.shape[1])
        cols = (self.start[:, None] + np.arange(self.taps.shape[1])).ravel()
        np.add.at(w, (rows, cols), self.taps.ravel())
        return w

    @functools.cached_property
    def index(self) -> np.ndarray:
        """(n_out, T) int64 input index of every tap (a gather table)."""
        return self.start.astype(np.int64)[:, None] + np.arange(self.taps.shape[1])

    @functools.cached_property
    def fixed(self) -> np.ndarray:
        """(n_out, T) int32 taps in Pillow's fixed point (``taps * 2**22``; exact for PIL plans)."""
        return np.rint(self.taps * (1 << _f.PIL_PRECISION_BITS)).astype(np.int32)

    @functools.cached_property
    def fixed_is_exact(self) -> bool:
        """Whether :attr:`fixed` holds the taps exactly (PIL's always; other weights rarely)."""
        return bool(np.array_equal(self.fixed.astype(np.float64) / (1 << _f.PIL_PRECISION_BITS), self.taps)
                    and np.abs(self.fixed).sum(axis=1, dtype=np.int64).max(initial=0) * 255 < 2**31 - 2**22)

    @functools.cached_property
    def is_identity(self) -> bool:
        """One tap of weight 1 per output, reading input ``o``: the step changes nothing."""
        return (self.n_out == self.n_in and self.taps.shape[1] == 1 and bool(np.all(self.taps == 1.0))
                and bool(np.array_equal(self.start, np.arange(self.n_out))))

    @classmethod
    def from_matrix(cls, axis: str, weights: np.ndarray, round_clip: bool = False) -> "ResizeStep":
        """The band of a dense (n_out, n_in) matrix: each row's nonzero span, padded to the widest."""
        w = np.asarray(weights, np.float64)
        n_out, n_in = w.shape
        nz = w != 0
        any_nz = nz.any(axis=1)
        first = np.where(any_nz, nz.argmax(axis=1), 0)
        last = np.where(any_nz, n_in - 1 - nz[:, ::-1].argmax(axis=1), 0)
        width = int(max(1, (last - first + 1).max(initial=1)))
        start = np.minimum(first, n_in - width).astype(np.int32)  # keep every band inside the axis
        index = start[:, None] + np.arange(width)
        taps = np.take_along_axis(w, index, axis=1) if n_out else np.zeros((0, width))
        return cls(axis, start, np.ascontiguousarray(taps), n_in, round_clip)


@dataclasses.dataclass(frozen=True, eq=False)
class PreprocessPlan:
    """One member's preprocessing for one source size (see :meth:`Preprocessing.plan`).

    Applied to uint8 ``(N, H, W, C_in)`` images, in order: ``x @ color`` (channel mix: luma,
    gray to RGB, BGR swap; then round half up/clip to 0..255 if ``color_round``), each resize
    step, ``x * mul + add`` per channel (float32), then ``layout``.

    A plan with ``color_round`` or a ``round_clip`` step (the PIL path, :attr:`exact`) works on
    uint8 values between steps: its weights have 22 fractional bits, so integer (Pillow's own)
    or float64 arithmetic reproduces PIL bit for bit; float32 can move a rounding by one grey
    level. Plans without rounding (the torch path) are float32 arithmetic, as PyTorch does.
    """

    source_hw: tuple[int, int]
    source_channels: int
    color: np.ndarray  #: (C_in, C_out) float64
    color_round: bool
    steps: tuple[ResizeStep, ...]
    mul: np.ndarray  #: (C_out,) float32
    add: np.ndarray  #: (C_out,) float32
    layout: str
    geometry: Geometry | None = None
    #: True when a PIL plan's two passes run vertical first (Pillow 13 does for some size pairs)
    vertical_first: bool = False

    @property
    def out_hw(self) -> tuple[int, int]:
        h, w = self.source_hw
        for s in self.steps:
            h, w = (s.n_out, w) if s.axis == "h" else (h, s.n_out)
        return h, w

    @property
    def out_channels(self) -> int:
        return int(self.color.shape[1])

    @property
    def exact(self) -> bool:
        """Whether the plan rounds to uint8 between steps (PIL's passes)."""
        return self.color_round or any(s.round_clip for s in self.steps)

    @functools.cached_property
    def color_is_identity(self) -> bool:
        return _is_identity(self.color)

    @functools.cached_property
    def color_selection(self) -> tuple[int, ...] | None:
        """For a 0/1 colour matrix with one 1 per output (gray to RGB, BGR): the input channel each
        output channel takes; None for a mix (luma)."""
        if np.all((self.color == 0) | (self.color == 1)) and np.all(self.color.sum(axis=0) == 1):
            return tuple(int(i) for i in self.color.argmax(axis=0))
        return None

    @functools.cached_property
    def color_fixed16(self) -> np.ndarray | None:
        """The colour matrix times 2**16 as int32 when that is exact (selections, PIL's luma), else None:
        integer (or exact float32) execution of the mix."""
        scaled = self.color.astype(np.float64) * (1 << 16)
        return scaled.astype(np.int32) if np.array_equal(scaled, np.rint(scaled)) else None

    def step(self, axis: str) -> ResizeStep | None:
        """The resize step along ``axis`` (``h`` or ``w``), if the plan has one."""
        return next((s for s in self.steps if s.axis == axis), None)

    @functools.cached_property
    def lut(self) -> np.ndarray:
        """(C_out, 256) float32: ``float32(v) * mul + add`` for every uint8 value ``v``, per channel.

        Bit-identical to the normalization of :meth:`apply` on uint8 values (the same float32 ops).
        """
        v = np.arange(256, dtype=np.float32)[None, :]
        return np.ascontiguousarray(v * self.mul[:, None] + self.add[:, None], np.float32)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The reference: uint8 (N, H, W, C_in) -> float32 member input, in NumPy (banded, in chunks)."""
        if tuple(x.shape[1:]) != (*self.source_hw, self.source_channels):
            raise ValueError(f"plan for {(*self.source_hw, self.source_channels)} images got {x.shape[1:]}")
        per_image = 8 * max(1, math.prod(x.shape[1:]), math.prod((*self.out_hw, self.out_channels)))
        chunk = max(1, _CHUNK_BYTES // per_image)
        if x.shape[0] <= chunk:
            return self.normalize(self.resized(x))
        return np.concatenate([self.normalize(self.resized(x[i: i + chunk])) for i in range(0, x.shape[0], chunk)])

    def resized(self, x: np.ndarray, color: bool = True) -> np.ndarray:
        """Colour (unless ``color`` is False: ``x`` is already mixed) and resize steps of the reference.

        float64 (N, H', W', C) for exact plans, else float32.
        """
        dt = np.float64 if self.exact else np.float32
        y = x.astype(dt)
        if color and not self.color_is_identity:
            y = y @ self.color.astype(dt, copy=False)
            if self.color_round:
                y = round_clip(y)
        for s in self.steps:
            if s.is_identity:
                continue
            y = banded_axis(y, s, 1 if s.axis == "h" else 2, dt)
            if s.round_clip:
                y = round_clip(y)
        return y

    def normalize(self, y: np.ndarray) -> np.ndarray:
        """(N, H', W', C_out) resized values -> float32 member input (``x * mul + add``, then the layout)."""
        y = y.astype(np.float32) * self.mul + self.add
        if self.layout == "NCHW":
            y = y.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(y, dtype=np.float32)


def round_clip(y: np.ndarray) -> np.ndarray:
    """Round half up, clip to 0..255 (what a uint8 pipeline does between passes)."""
    return np.clip(np.floor(y + 0.5), 0, 255)


def banded_axis(y: np.ndarray, step: ResizeStep, axis: int, dtype=np.float64) -> np.ndarray:
    """``step`` applied along ``axis`` of ``y``: one gather and multiply-add per tap (cost ~ output x taps)."""
    taps = step.taps.astype(dtype, copy=False)
    shape = [1] * y.ndim
    shape[axis] = step.n_out
    out = None
    for t in range(taps.shape[1]):
        term = np.take(y, step.index[:, t], axis=axis) * taps[:, t].reshape(shape)
        out = term if out is None else out + term
    return out


def _is_identity(m: np.ndarray) -> bool:
    return m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0], dtype=m.dtype))


# ------------------------------------------------------------------------------------ building
@functools.lru_cache(maxsize=256)
def build_plan(pp: "Preprocessing", source_hw: tuple[int, int], source_channels: int) -> PreprocessPlan:
    """The plan of ``pp`` for ``source_channels``-channel images of ``source_hw`` (cached)."""
    if source_channels not in (1, 3):
        raise EdgeCommitteeError(f"raw images must have 1 or 3 channels; got {source_channels}")
    mul, add = pp._affine()
    color, color_round = _color_matrix(pp, source_channels)
    steps, geometry, vertical_first = _resize_steps(pp, *source_hw)
    return PreprocessPlan(source_hw, source_channels, color, color_round, steps, mul, add, pp.layout, geometry,
                          vertical_first)


def _resize_steps(pp: "Preprocessing", in_h: int, in_w: int) -> tuple[tuple[ResizeStep, ...], Geometry | None, bool]:
    out_h, out_w = pp.size
    antialias = bool(pp.antialias) if pp.resize_impl in ("torch", "tf") else True
    if pp.resize == "crop_then_resize":  # TF: central_crop, then resize the crop
        (y0, ch), (x0, cw) = _f.tf_central_crop(in_h, pp.crop_pct), _f.tf_central_crop(in_w, pp.crop_pct)
        wy = _f.embed_columns(_f.resize_matrix(ch, out_h, pp.interpolation, pp.resize_impl, antialias),
                              y0, in_h)
        wx = _f.embed_columns(_f.resize_matrix(cw, out_w, pp.interpolation, pp.resize_impl, antialias),
                              x0, in_w)
        geometry = None
    else:
        mid_h, mid_w = _f.resized_size(pp.resize, (in_h, in_w), pp.size, float(pp.crop_pct), pp.resize_size)
        oy, ox = _f.center_offset(mid_h, out_h), _f.center_offset(mid_w, out_w)
        wy = _f.crop_rows(_f.resize_matrix(in_h, mid_h, pp.interpolation, pp.resize_impl, antialias), oy, out_h)
        wx = _f.crop_rows(_f.resize_matrix(in_w, mid_w, pp.interpolation, pp.resize_impl, antialias), ox, out_w)
        geometry = Geometry((mid_h, mid_w), (oy, ox), pp.interpolation, pp.resize_impl, antialias)
    if pp.resize_impl != "pil":  # float tensors: no rounding, the order does not matter
        return (ResizeStep.from_matrix("w", wx), ResizeStep.from_matrix("h", wy)), geometry, False
    # PIL works on uint8 images: two passes, each rounded and clipped, in Pillow's order
    mid = geometry.mid_hw if geometry else pp.size
    first, _ = _f.pil_pass_order((in_h, in_w), mid, pp.interpolation)
    steps = {"w": ResizeStep.from_matrix("w", wx, True), "h": ResizeStep.from_matrix("h", wy, True)}
    return (steps[first], steps["h" if first == "w" else "w"]), geometry, first == "h"


def _color_matrix(pp: "Preprocessing", source_channels: int) -> tuple[np.ndarray, bool]:
    if pp.color == "gray":
        if source_channels == 1:
            return np.ones((1, 1), np.float64), False
        luma = _f.PIL_LUMA if pp.resize_impl == "pil" else _f.TORCH_LUMA
        return luma[:, None].copy(), pp.resize_impl == "pil"
    m = np.ones((1, 3), np.float64) if source_channels == 1 else np.eye(3, dtype=np.float64)
    return (m[:, ::-1].copy() if pp.channel_order == "BGR" else m), False
