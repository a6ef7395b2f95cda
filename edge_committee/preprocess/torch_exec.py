"""A member's preprocessing on torch tensors: a :class:`~edge_committee.preprocess.plan.PreprocessPlan`, executed.

The device runtime's executor (it also runs on the CPU, for the tests). Every field of the plan
runs in the plan's order: the colour step, each banded resize step as a sum over its taps of
``index_select`` times the tap weights (a few taps at a time, so the work is proportional to
output x taps and the largest intermediate to a few outputs), then in float32 ``x * mul + add``
(one ``addcmul``), the layout and the output dtype (one copy). Identity steps are skipped.

Arithmetic, never float64 (edge GPUs run it at a small fraction of their float32 rate):

- a PIL plan (rounding to uint8 between steps) with ``exact=True`` (default) runs Pillow's own
  integer arithmetic: int32 weights ``k / 2**22``, ``(sum + 2**21) >> 22`` clipped to 0..255 after
  each pass, PIL's luma in 16-bit fixed point. Bit for bit the NumPy reference and PIL.
- ``exact=False``: the same plan in float32; a value within float32 rounding of a ``.5`` can round
  the other way (one grey level).
- plans without rounding (the torch and tf paths) run in float32 and agree with NumPy to float32
  rounding (the order of the sums differs).

A rounding plan whose weights are not 22-bit fixed point (no spec produces one; only hand-made
plans) keeps the float64 arithmetic of the reference with ``exact=True``.

Runs inside a captured CUDA graph: no host synchronization, no allocation outside PyTorch's allocator.
"""

from __future__ import annotations

import numpy as np

from edge_committee._lazy import require
from edge_committee.preprocess.filters import PIL_PRECISION_BITS
from edge_committee.preprocess.plan import PreprocessPlan

#: taps gathered at once (the intermediate is this many times a step's output)
TAPS_PER_GATHER = 4
#: Pillow's luma has 16 fractional bits
_LUMA_BITS = 16


class TorchPlan:
    """A :class:`PreprocessPlan` on ``device``: call it on uint8 (B, H, W, C_in) -> float32 member input.

    Args:
        plan: the plan (for one source size and channel count).
        device: a ``torch.device`` (or string) where the weights live and the work runs.
        dtype: the output dtype (``torch.float32`` default; ``torch.float16`` for FP16 members,
            cast after the whole plan ran).
        exact: run a PIL plan in Pillow's integer arithmetic (default True; see the module docstring).
    """

    def __init__(self, plan: PreprocessPlan, device, dtype=None, exact: bool = True) -> None:
        torch = require("torch")
        self.plan = plan
        self.dtype = dtype or torch.float32
        representable = all(s.fixed_is_exact for s in plan.steps) and plan.color_fixed16 is not None
        self.integer = exact and plan.exact and representable
        self.work = torch.int32 if self.integer else (
            torch.float64 if exact and plan.exact else torch.float32)
        #: integer runs take the mix in 16-bit fixed point (PIL's luma, or a selection times 2**16)
        self.color = None if plan.color_is_identity else torch.as_tensor(
            plan.color_fixed16 if self.integer else plan.color, dtype=self.work).to(device)
        self.steps = []
        for s in plan.steps:
            if s.is_identity:
                continue
            taps = s.fixed if self.integer else s.taps
            groups = []
            for t0 in range(0, taps.shape[1], TAPS_PER_GATHER):
                t1 = min(t0 + TAPS_PER_GATHER, taps.shape[1])
                index = (s.start.astype(np.int64)[:, None] + np.arange(t0, t1)).ravel()
                groups.append((torch.as_tensor(index, device=device),
                               torch.as_tensor(np.ascontiguousarray(taps[:, t0:t1]), dtype=self.work).to(device)))
            self.steps.append((1 if s.axis == "h" else 2, s.n_out, groups, bool(s.round_clip)))
        self.mul = torch.as_tensor(plan.mul, dtype=torch.float32).to(device)
        self.add = torch.as_tensor(plan.add, dtype=torch.float32).to(device)

    def _round_clip(self, y, bits: int = PIL_PRECISION_BITS):
        if self.integer:  # Pillow: (sum + 2**(bits-1)) >> bits, clipped to 0..255
            return ((y + (1 << (bits - 1))) >> bits).clamp_(0, 255)
        return (y + 0.5).floor_().clamp_(0.0, 255.0)  # NumPy: clip(floor(y + 0.5), 0, 255)

    def _resize(self, y, dim: int, n_out: int, groups):
        torch = require("torch")
        total = None
        for index, taps in groups:
            k = taps.shape[1]
            picked = torch.index_select(y, dim, index)
            picked = picked.view(*y.shape[:dim], n_out, k, *y.shape[dim + 1:])
            w = taps.view(n_out, k, *([1] * (y.dim() - dim - 1)))
            part = (picked * w).sum(dim + 1, dtype=self.work)
            total = part if total is None else total.add_(part)
        return total

    def __call__(self, x):
        """uint8 (B, H, W, C_in) -> (B, C, H', W') or (B, H', W', C) in ``dtype``."""
        torch = require("torch")
        y = x.to(self.work)
        if self.color is not None:
            # C_in <= 3: a broadcast multiply-sum, which (unlike an int32 matmul) CUDA runs for integers too
            y = (y.unsqueeze(-1) * self.color).sum(-2, dtype=self.work)
            if self.integer:  # back from 16-bit fixed point: PIL's rounded luma; a selection's values unchanged
                y = self._round_clip(y, _LUMA_BITS)
            elif self.plan.color_round:
                y = self._round_clip(y)
        for dim, n_out, groups, round_clip in self.steps:
            y = self._resize(y, dim, n_out, groups)
            if round_clip:
                y = self._round_clip(y)
            elif self.integer:  # a PIL plan's unrounded step cannot occur; keep the scale right if it does
                y = y >> PIL_PRECISION_BITS
        y = torch.addcmul(self.add, y.float(), self.mul)  # one kernel for x * mul + add
        if self.plan.layout == "NCHW":
            y = y.permute(0, 3, 1, 2)
        out = torch.empty(y.shape, dtype=self.dtype, device=y.device)
        return out.copy_(y)  # layout and dtype in one copy
