"""Gate steps on torch tensors for the device runtime: the CUDA kernel, or the same step in torch ops.

Both take the signature of :func:`edge_committee.gate.gate_step_cuda` (state updated in place,
survivors and their count written to device buffers, nothing read back):

- :func:`gate_step_torch` implements :func:`edge_committee.cascade.reference.gate_step` with torch
  ops that never synchronize with the host (the stable compaction is an ``argsort``), so it runs on
  the CPU (the CPU tests of the device runtime) and can be captured into a CUDA graph (the fallback
  when ``edge_committee._C`` was built without CUDA).
- :func:`fix_survivors_torch` is the step between two gates (see :mod:`.kernels` for the CUDA twin).
"""

from __future__ import annotations

from typing import Any, Callable

from edge_committee._lazy import require
from edge_committee.cascade.reference import check_confidence_name

GateStep = Callable[..., None]


def _softmax(x):
    # reference.softmax: subtract the row max, exp, divide by the row sum (float32)
    x = x - x.max(dim=-1, keepdim=True).values
    e = x.exp()
    return e / e.sum(dim=-1, keepdim=True)


def contributions_torch(prob_sum):
    """(M,) float32: stages that contributed to each row, at least 1 (``reference.contributions``).

    Each contributing stage added one softmax row (sum 1): the count is the rounded row sum
    (summed in float64, rounded half to even as ``np.rint``).
    """
    torch = require("torch")
    return torch.clamp(torch.round(prob_sum.to(torch.float64).sum(dim=-1)), min=1.0).to(torch.float32)


def _confidence(p, kind: str):
    torch = require("torch")
    if kind == "max_prob" or (kind == "margin" and p.shape[-1] < 2):
        return p.max(dim=-1).values
    if kind == "margin":
        top = p.topk(2, dim=-1).values
        return top[:, 0] - top[:, 1]
    pos = p > 0
    return torch.where(pos, p * torch.where(pos, p, torch.ones_like(p)).log(), torch.zeros_like(p)).sum(dim=-1)


def gate_step_torch(prob_sum, label, conf, exit_stage, flag, active, logits, survivors, survivor_count,
                    stage: int, num_stages: int, threshold: float, kind: str = "max_prob", stream: Any = None) -> None:
    """One gate stage in torch ops, in place (arguments as :func:`edge_committee.gate.gate_step_cuda`).

    ``stream`` is accepted for the common signature; the ops run on the current stream.
    """
    torch = require("torch")
    check_confidence_name(kind)
    m = active.shape[0]
    if m == 0:
        survivor_count.zero_()
        return
    idx = active.long()
    x = logits.float()
    ok = torch.isfinite(x).all(dim=-1)
    probs = _softmax(torch.where(ok[:, None], x, torch.zeros_like(x)))
    ps = prob_sum[idx] + torch.where(ok[:, None], probs, torch.zeros_like(probs))
    prob_sum[idx] = ps
    flag[idx] = torch.where(ok, flag[idx], torch.ones_like(flag[idx]))
    mean = ps / contributions_torch(ps)[:, None]
    exit_and_compact(mean, ps.sum(dim=-1) <= 0, ok, label, conf, exit_stage, active, survivors, survivor_count,
                     stage, num_stages, threshold, kind)


def exit_and_compact(probs, empty, ok, label, conf, exit_stage, active, survivors, survivor_count, stage: int,
                     num_stages: int, threshold: float, kind: str) -> None:
    """The end of every gate stage, in place: confidence of ``probs`` (the active samples' combined
    probabilities), exits (every sample at the last stage, else finite rows at or above the
    threshold), label/confidence/stage of those that exit (-1/NaN where ``empty``: no stage
    contributed), and the survivors compacted first, in order, with their count."""
    torch = require("torch")
    idx = active.long()
    c = _confidence(probs, kind)
    exits = torch.ones_like(ok) if stage == num_stages - 1 else ok & (c >= float(threshold))
    lab = torch.where(empty, torch.full_like(idx, -1), probs.argmax(dim=-1)).to(label.dtype)
    cval = torch.where(empty, torch.full_like(c, float("nan")), c)
    label[idx] = torch.where(exits, lab, label[idx])
    conf[idx] = torch.where(exits, cval, conf[idx])
    exit_stage[idx] = torch.where(exits, torch.full_like(label[idx], stage), exit_stage[idx])
    order = torch.argsort(exits.to(torch.int32), stable=True)  # survivors first, in order
    survivors[: active.shape[0]] = active[order]
    survivor_count.copy_((~exits).sum().to(survivor_count.dtype).reshape(1))


def fix_survivors_torch(src, count, b: int, capacity: int, act_out, gidx_out, real_out, pos) -> None:
    """Make the first ``b`` entries of the next stage's index buffers from a gate's survivors.

    Entry ``j`` is *valid* when ``j < count[0]`` and ``src[j]`` is a real sample (``< capacity``); the
    gate's stable compaction puts the real samples first. Writes ``act_out[j]`` = ``src[j]`` if valid,
    else the sink row ``capacity + j``; ``gidx_out[j]`` = ``src[j]`` if valid, else 0 (a valid image row
    to read, whose result is discarded); ``real_out[0]`` = the number of valid entries. ``src`` None
    means ``src[j] = j`` (stage 0). ``pos`` is ``arange(b)`` (int32, on the device). ``src`` may be
    ``act_out``.
    """
    torch = require("torch")
    v = pos[:b] if src is None else src[:b]
    valid = (pos[:b] < count) & (v < capacity) & (v >= 0)
    act = torch.where(valid, v, pos[:b] + capacity)
    gidx = torch.where(valid, v, torch.zeros_like(v))
    act_out[:b] = act
    gidx_out[:b] = gidx
    real_out.copy_(valid.sum().to(real_out.dtype).reshape(1))


def cuda_gate_step() -> GateStep:
    """:func:`edge_committee.gate.gate_step_cuda` (raises DependencyError when the extension lacks CUDA)."""
    from edge_committee.gate import cuda as gate_cuda

    gate_cuda._cuda_extension()
    return gate_cuda.gate_step_cuda
