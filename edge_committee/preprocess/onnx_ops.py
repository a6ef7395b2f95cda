"""A member's preprocessing as ONNX ops, built from :meth:`Preprocessing.plan` and nothing else.

The plan (:mod:`edge_committee.preprocess.plan`) holds every number: a channel-mix matrix, one
banded resize step per axis (crops folded in), per-channel ``mul``/``add`` and the layout.
Executing every field here, in the plan's order and with the plan's arithmetic, is what makes the
fused file agree with :meth:`PreprocessPlan.apply` for any interpolation or crop policy the spec
offers, including ones added later. Only standard ops appear (Transpose, Gather, Mul, ReduceSum,
Add, Floor, Clip, Cast); no ``Resize`` is emitted, because ONNX ``Resize`` differs from the
project's filters at the border (research/cascade_onnx.md §2), and no dense matrix: a resize step
is a sum over its taps of ``Gather(x, index[:, t]) * taps[:, t]``, taken a few taps at a time, so the
cost is proportional to output x taps and the largest intermediate to a few outputs, whatever
the camera frame's size.

Arithmetic (``precision``): a plan that rounds to uint8 between steps (PIL's passes:
``color_round`` or a ``round_clip`` step) is exact in float64 (22-bit weights times 8-bit values:
every product and sum is exact, in any order); ``exact`` computes it there (Cast to double, round,
Cast back to float32 before the per-channel Mul/Add), bit for bit. TensorRT has no float64, so a
TensorRT file needs ``float32``: there Pillow's 22-bit weights are split in two 11-bit halves so
that every product and sum is an integer below 2**24, which float32 holds exactly
(:func:`_split_resize_step`): bit for bit as well, on any float32 engine. A rounding plan whose
weights are not 22-bit fixed point (none the spec makes) runs plainly in float32, where a value at a
rounding tie may move by one grey level. Plans without rounding always run in float32, as the
apply method does.
"""

from __future__ import annotations

import numpy as np

from edge_committee.export.cascade_onnx._graph import GraphBuilder
from edge_committee.export.cascade_onnx.errors import FusedExportError
from edge_committee.preprocess.plan import PreprocessPlan, ResizeStep

LAYOUTS = ("NCHW", "NHWC")

#: transposes between the plan's NHWC images and the NCHW the resize MatMuls work on
_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
#: how a plan that rounds between steps is computed (see the module docstring)
PRECISIONS = ("exact", "float32")
#: taps gathered at once by one resize node group: the intermediate is this many times the step's output
TAPS_PER_GATHER = 4


def rounds_between_steps(plan: PreprocessPlan) -> bool:
    """True for a plan that PreprocessPlan.apply runs in float64 (it rounds to uint8 between steps)."""
    return plan.exact


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise FusedExportError(f"preprocessing precision {precision!r} is not known; use {' or '.join(PRECISIONS)}")


def check_plan(plan: PreprocessPlan, member: str, form: str, gate: str = "standard", precision: str = "exact") -> None:
    """Raise :class:`FusedExportError` (one line) for a plan this builder cannot write in this form.

    ``gate`` ``plugin`` is the TensorRT file: float64 is not available there (see the module doc).
    """

    def fail(why: str) -> None:
        raise FusedExportError(f"member {member!r}: its preprocessing cannot be written in the {form} form "
                               f"with the {gate} gate: {why}")

    check_precision(precision)
    if gate == "plugin" and precision == "exact" and rounds_between_steps(plan):
        fail("it rounds to uint8 between resize passes (resize_impl pil), which --preprocess exact computes in "
             "float64, and TensorRT has no float64; pass --preprocess float32 (Pillow's arithmetic with split weights "
             "in float32, bit-exact)")

    if plan.layout not in LAYOUTS:
        fail(f"layout {plan.layout!r} is not one of {', '.join(LAYOUTS)}")
    color = np.asarray(plan.color)
    if color.ndim != 2 or color.shape[0] != plan.source_channels:
        fail(f"colour matrix of shape {color.shape} does not take {plan.source_channels} source channels")
    h, w = plan.source_hw
    for i, step in enumerate(plan.steps):
        n_in = {"h": h, "w": w}.get(step.axis)
        if n_in is None:
            fail(f"resize step {i} is along axis {step.axis!r}; only 'h' and 'w' exist")
        taps, start = np.asarray(step.taps), np.asarray(step.start)
        if (step.n_in != n_in or taps.ndim != 2 or start.shape != (taps.shape[0],)
                or (start.size and (start.min() < 0 or start.max() + taps.shape[1] > n_in))):
            fail(f"resize step {i} ({step.axis}) reads {step.n_in} inputs (taps {taps.shape}) from an input of {n_in}")
        h, w = (step.n_out, w) if step.axis == "h" else (h, step.n_out)
    arrays = [color, *(np.asarray(s.taps) for s in plan.steps), plan.mul, plan.add]
    if not all(np.isfinite(a).all() for a in arrays):
        fail("the plan holds non-finite numbers")
    c_out = color.shape[1]
    if np.asarray(plan.mul).shape != (c_out,) or np.asarray(plan.add).shape != (c_out,):
        fail(f"mul/add must have {c_out} values (one per output channel)")


def output_shape(plan: PreprocessPlan) -> tuple[int, int, int]:
    """The member input's (C, H, W) or (H, W, C), without the batch dimension."""
    h, w = plan.out_hw
    c = int(np.asarray(plan.color).shape[1])
    return (c, h, w) if plan.layout == "NCHW" else (h, w, c)


def _round_clip(g: GraphBuilder, x: str, dtype: type) -> str:
    """Round half up, then clip to 0..255: ``clip(floor(x + 0.5), 0, 255)`` as the plan does."""
    y = g.op("Floor", [g.op("Add", [x, g.const(dtype(0.5), "half")])], "rounded")
    return g.op("Clip", [y, g.const(dtype(0.0), "lo"), g.const(dtype(255.0), "hi")], "clipped")


def _resize_step(g: GraphBuilder, x: str, step: ResizeStep, dtype: type) -> str:
    """One axis of an (M, C, H, W) tensor through its banded filter: sum over taps of Gather * weight."""
    axis = 2 if step.axis == "h" else 3
    taps = np.asarray(step.taps, dtype)
    total = None
    for t0 in range(0, taps.shape[1], TAPS_PER_GATHER):
        t1 = min(t0 + TAPS_PER_GATHER, taps.shape[1])
        index = step.start.astype(np.int64)[:, None] + np.arange(t0, t1)  # (n_out, k)
        picked = g.op("Gather", [x, g.const(index, f"taps_{step.axis}")], f"picked_{step.axis}", axis=axis)
        # weights broadcast against (M, C, n_out, k, W) or (M, C, H, n_out, k)
        w = taps[:, t0:t1].reshape(taps.shape[0], t1 - t0, *([1] if axis == 2 else []))
        part = g.op("Mul", [picked, g.const(np.ascontiguousarray(w), f"weights_{step.axis}")], f"weighted_{step.axis}")
        part = g.op("ReduceSum", [part, g.const(np.array([axis + 1], np.int64), "tap_axis")], f"partial_{step.axis}",
                    keepdims=0)
        total = part if total is None else g.op("Add", [total, part], f"resized_{step.axis}")
    return total


#: the split of Pillow's 22-bit weights for exact float32 arithmetic: k = kh * 2**SPLIT_BITS + kl
SPLIT_BITS = 11
#: taps summed before the low part's carry moves into the high part (keeps every sum below 2**24)
_TAPS_PER_CARRY = 32


def exact_in_float32(plan: PreprocessPlan) -> bool:
    """Whether a rounding plan can be computed bit for bit in float32 (see :func:`_split_resize_step`)."""
    color = plan.color_fixed16
    return (plan.exact and all(s.fixed_is_exact for s in plan.steps)
            and color is not None and int(color.sum(axis=0).max()) <= 65536)


def _split_resize_step(g: GraphBuilder, x: str, step: ResizeStep) -> str:
    """Pillow's rounded pass in float32, exactly: integers below 2**24 only, as float32 holds them.

    With ``k = kh * 2**11 + kl`` (``0 <= kl < 2**11``), ``sum(k v) = 2**11 A + B`` where ``A = sum(kh v)``
    and ``B = sum(kl v)``; each product and partial sum is an integer below 2**24 (the low sum is
    carried into ``A`` every 32 taps). Pillow's ``(sum + 2**21) >> 22`` is then
    ``floor((A + floor((B + 2**21) / 2**11)) / 2**11)``, and the summation order does not matter, so
    the result is the plan's bit for bit on any float32 engine (TensorRT included; no MatMul, no TF32).
    """
    axis = 2 if step.axis == "h" else 3
    k = step.fixed.astype(np.int64)
    kh = np.floor_divide(k, 1 << SPLIT_BITS)
    kl = k - kh * (1 << SPLIT_BITS)
    unit = float(1 << SPLIT_BITS)
    a = b = None
    for t0 in range(0, k.shape[1], TAPS_PER_GATHER):
        t1 = min(t0 + TAPS_PER_GATHER, k.shape[1])
        index = step.start.astype(np.int64)[:, None] + np.arange(t0, t1)
        picked = g.op("Gather", [x, g.const(index, f"taps_{step.axis}")], f"picked_{step.axis}", axis=axis)
        shape = (k.shape[0], t1 - t0, *([1] if axis == 2 else []))
        for part, name in ((kh, "hi"), (kl, "lo")):
            w = g.const(part[:, t0:t1].reshape(shape).astype(np.float32), f"weights_{name}_{step.axis}")
            term = g.op("ReduceSum", [g.op("Mul", [picked, w], f"weighted_{name}"),
                                      g.const(np.array([axis + 1], np.int64), "tap_axis")], f"sum_{name}", keepdims=0)
            if name == "hi":
                a = term if a is None else g.op("Add", [a, term], "sum_hi")
            else:
                b = term if b is None else g.op("Add", [b, term], "sum_lo")
        if t1 % _TAPS_PER_CARRY == 0 and t1 < k.shape[1]:  # carry: B = 2**11 q + r
            q = g.op("Floor", [g.op("Div", [b, g.const(np.float32(unit), "unit")], "lo_div")], "carry")
            a = g.op("Add", [a, q], "sum_hi")
            b = g.op("Sub", [b, g.op("Mul", [q, g.const(np.float32(unit), "unit")], "carried")], "sum_lo")
    half = g.op("Add", [b, g.const(np.float32(1 << (2 * SPLIT_BITS - 1)), "half")], "lo_half")
    q = g.op("Floor", [g.op("Div", [half, g.const(np.float32(unit), "unit")], "lo_div")], "carry")
    y = g.op("Floor", [g.op("Div", [g.op("Add", [a, q], "total"), g.const(np.float32(unit), "unit")], "shifted")],
             "rounded")
    return g.op("Clip", [y, g.const(np.float32(0.0), "lo"), g.const(np.float32(255.0), "hi")], "clipped")


def _exact_luma(g: GraphBuilder, x: str, plan: PreprocessPlan) -> str:
    """The colour mix with 16-bit weights in float32, exactly (Mul + ReduceSum, no MatMul), rounded as Pillow."""
    w = plan.color_fixed16.astype(np.float32)  # (C_in, C_out) integers below 2**16
    picked = g.op("Unsqueeze", [x, g.const(np.array([-1], np.int64), "last")], "pixels")  # (M, H, W, C_in, 1)
    y = g.op("ReduceSum", [g.op("Mul", [picked, g.const(w, "luma")], "weighted_c"),
                           g.const(np.array([3], np.int64), "channel_axis")], "luma_sum", keepdims=0)
    y = g.op("Floor", [g.op("Div", [g.op("Add", [y, g.const(np.float32(32768), "half16")], "luma_half"),
                                    g.const(np.float32(65536), "unit16")], "luma_div")], "luma")
    return g.op("Clip", [y, g.const(np.float32(0.0), "lo"), g.const(np.float32(255.0), "hi")], "clipped")


def add_preprocessing(g: GraphBuilder, plan: PreprocessPlan, images: str, out: str, out_dtype: int,
                      precision: str = "exact") -> None:
    """Append ops taking float32 ``images`` (M, H, W, C_in) to the member input ``out``.

    ``out_dtype``: the member input's ONNX element type (FLOAT or FLOAT16; a Cast is added for
    the latter, as the runtime casts its float32 batch). ``precision``: see the module docstring.
    """
    tp = g.onnx.TensorProto
    split = precision == "float32" and exact_in_float32(plan)  # Pillow's arithmetic in float32, exactly
    wide = precision == "exact" and rounds_between_steps(plan)
    dtype = np.float64 if wide else np.float32
    y = g.op("Cast", [images], "images_f64", to=tp.DOUBLE) if wide else images  # 0..255: exact
    color = np.ascontiguousarray(plan.color, dtype)
    if not plan.color_is_identity:  # (M, H, W, C_in) @ (C_in, C_out)
        if split and plan.color_round:
            y = _exact_luma(g, y, plan)
        else:
            y = g.op("MatMul", [y, g.const(color, "color")], "colored")
            if plan.color_round:
                y = _round_clip(g, y, dtype)
    y = g.op("Transpose", [y], "nchw", perm=_TO_NCHW)
    for step in plan.steps:
        if step.is_identity:
            continue
        if split and step.round_clip:
            y = _split_resize_step(g, y, step)
            continue
        y = _resize_step(g, y, step, dtype)
        if step.round_clip:
            y = _round_clip(g, y, dtype)
    if wide:
        y = g.op("Cast", [y], "resized_f32", to=tp.FLOAT)
    shape = (-1, 1, 1)  # per channel on (M, C, H, W)
    y = g.op("Mul", [y, g.const(np.asarray(plan.mul, np.float32).reshape(shape), "mul")], "scaled")
    last_float = out if plan.layout == "NCHW" and out_dtype == tp.FLOAT else None
    y = g.op("Add", [y, g.const(np.asarray(plan.add, np.float32).reshape(shape), "add")], "normalized",
             outputs=[last_float] if last_float else None)
    if plan.layout == "NHWC":
        y = g.op("Transpose", [y], "nhwc", perm=_TO_NHWC, outputs=[out] if out_dtype == tp.FLOAT else None)
    if out_dtype != tp.FLOAT:
        g.op("Cast", [y], outputs=[out], to=out_dtype)
