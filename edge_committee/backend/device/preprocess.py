"""A member's preprocessing on torch tensors: :class:`~edge_committee.spec.preprocess.PreprocessPlan`, executed.

Every field of the plan is executed in the plan's order and with the NumPy path's arithmetic
(:meth:`PreprocessPlan.apply`): uint8 -> float, the channel mix ``x @ color`` (then round half up
and clip to 0..255 if ``color_round``), each :class:`ResizeStep` as a matrix product along its axis
(then round/clip if ``round_clip``), then in float32 ``x * mul + add`` (one ``addcmul``), the layout
and the output dtype (one copy). Identity colour matrices and identity resize steps are skipped, as
NumPy skips them.

An *exact* plan (one that rounds between steps: PIL's uint8 passes) runs the mixing and resizing in
float64, as NumPy does: PIL's weights have 22 fractional bits, so every product and sum is exact and
the result equals the NumPy path (and PIL) bit for bit. ``exact=False`` runs them in float32
instead (faster where float64 is slow, e.g. Jetson GPUs); then a value within float32 rounding of a
``.5`` can round the other way (one grey level). Other plans run in float32 and agree with NumPy to
float32 rounding (the order of the sums in a matrix product differs).

Runs on the GPU inside a captured CUDA graph (no host synchronization, no allocation outside
PyTorch's allocator) and on the CPU for the tests.
"""

from __future__ import annotations

from edge_committee._lazy import require
from edge_committee.spec.preprocess import PreprocessPlan


def _identity(m) -> bool:
    import numpy as np

    return m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0], dtype=m.dtype))


class TorchPlan:
    """A :class:`PreprocessPlan` on ``device``: call it on uint8 (B, H, W, C_in) -> float32 member input.

    Args:
        plan: the plan (for one source size and channel count).
        device: a ``torch.device`` (or string) where the weights live and the work runs.
        dtype: the output dtype (``torch.float32`` default; ``torch.float16`` for FP16 members,
            cast after the whole plan ran).
        exact: run an exact plan's mixing and resizing in float64 (default True; see the module
            docstring). Plans without rounding always run in float32.
    """

    def __init__(self, plan: PreprocessPlan, device, dtype=None, exact: bool = True) -> None:
        torch = require("torch")
        self.plan = plan
        self.dtype = dtype or torch.float32
        self.work = torch.float64 if (exact and plan.exact) else torch.float32

        def tensor(a, dt):
            return torch.as_tensor(a, dtype=dt).to(device)

        self.color = None if _identity(plan.color) else tensor(plan.color, self.work)
        self.steps = [(s.axis, tensor(s.weights, self.work), bool(s.round_clip)) for s in plan.steps
                      if not _identity(s.weights)]
        self.mul, self.add = tensor(plan.mul, torch.float32), tensor(plan.add, torch.float32)

    @staticmethod
    def _round_clip(y):
        # NumPy: clip(floor(y + 0.5), 0, 255), in the working dtype
        return (y + 0.5).floor_().clamp_(0.0, 255.0)

    def __call__(self, x):
        """uint8 (B, H, W, C_in) -> (B, C, H', W') or (B, H', W', C) in ``dtype``."""
        y = x.to(self.work)
        if self.color is not None:
            y = y @ self.color
            if self.plan.color_round:
                y = self._round_clip(y)
        for axis, w, round_clip in self.steps:
            if axis == "h":  # out[n, o, w, c] = sum_h W[o, h] in[n, h, w, c]
                b, h, wd, c = y.shape
                y = (w @ y.reshape(b, h, wd * c)).reshape(b, w.shape[0], wd, c)
            else:  # out[n, h, o, c] = sum_w W[o, w] in[n, h, w, c]: batched over (n, h)
                y = w @ y
            if round_clip:
                y = self._round_clip(y)
        torch = require("torch")
        y = torch.addcmul(self.add, y.float(), self.mul)  # one kernel for x * mul + add (may fuse the rounding)
        if self.plan.layout == "NCHW":
            y = y.permute(0, 3, 1, 2)
        out = torch.empty(y.shape, dtype=self.dtype, device=y.device)
        return out.copy_(y)  # layout and dtype in one copy
