"""A learned committee's gate in the device runtime: ``learned.learned_gate_step`` in torch ops.

Stage ``k`` decides on its own combiner over members ``0..k`` (``softmax(b + sum_m W[m] * lp_m)``,
:class:`~edge_committee.cascade.learned.Combiner`). The state :class:`LearnedGateState` keeps beyond
the plain one lives on the device, next to the runtime's other state buffers (rows by original
sample index, sink rows included; :meth:`LearnedTorchGate.buffers`):

- ``log_probs`` (K, rows, C) float32: member ``k``'s log-probabilities of the samples that ran
  stage ``k`` (0 for non-finite rows), written at stage ``k`` and read by the later stages;
- ``contributed`` (rows,) float32: the stages that gave the sample finite logits.

Every row a stage reads was written by an earlier stage of the same run (a sample active at stage
``k`` was active at every earlier stage), so nothing needs resetting between runs. Like
:func:`.gate.gate_step_torch`, the step never synchronizes with the host (no ``.item()``, no
data-dependent shapes; the stable compaction is an ``argsort``), so it can be captured into the
stage's CUDA graph; the CUDA gate kernel implements the plain average only and is not used here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_committee._lazy import require
from edge_committee.backend.device.gate import _softmax, exit_and_compact
from edge_committee.cascade.reference import check_confidence_name
from edge_committee.errors import EdgeCommitteeError


def check_combiners(combiners: Sequence[Any], num_stages: int) -> list:
    """``combiners`` as a list, if stage ``k``'s combines ``k + 1`` members; else a one-line error."""
    combiners = list(combiners)
    if len(combiners) != num_stages:
        raise EdgeCommitteeError(f"a learned committee of {num_stages} members needs one combiner per stage; "
                                 f"got {len(combiners)}")
    for k, comb in enumerate(combiners):
        if comb.num_members != k + 1:
            raise EdgeCommitteeError(f"stage {k}'s combiner combines {comb.num_members} members; expected {k + 1}")
    return combiners


class LearnedTorchGate:
    """The learned gate step, with the signature of :func:`.gate.gate_step_torch` plus its buffers.

    Args:
        combiners: stage ``k``'s :class:`~edge_committee.cascade.learned.Combiner` at index ``k``.
        device: where the weights live (the runtime's device).
    """

    def __init__(self, combiners: Sequence[Any], device: Any) -> None:
        torch = require("torch")
        self.combiners = list(combiners)
        self.num_classes = self.combiners[0].num_classes
        # copies: a combiner's arrays may be read-only views, which torch.from_numpy warns about
        self.weights = [torch.from_numpy(np.array(c.weights, np.float32)).to(device) for c in self.combiners]
        self.bias = [torch.from_numpy(np.array(c.bias, np.float32)).to(device) for c in self.combiners]

    def buffers(self, rows: int, num_classes: int, device: Any) -> dict:
        """The extra state of ``rows`` rows: keyword arguments of :meth:`__call__`."""
        torch = require("torch")
        if num_classes != self.num_classes:
            raise EdgeCommitteeError(f"the learned combiner has {self.num_classes} classes; the members give "
                                     f"{num_classes}")
        return {"log_probs": torch.zeros((len(self.combiners), rows, num_classes), dtype=torch.float32,
                                         device=device),
                "contributed": torch.zeros(rows, dtype=torch.float32, device=device)}

    def __call__(self, prob_sum, label, conf, exit_stage, flag, active, logits, survivors, survivor_count,
                 stage: int, num_stages: int, threshold: float, kind: str = "max_prob", stream: Any = None, *,
                 log_probs, contributed) -> None:
        """One learned gate stage in place (arguments as :func:`edge_committee.gate.gate_step_cuda`).

        ``prob_sum`` receives the stage's combined probabilities of the active samples (not a sum:
        the runtime's finalize divides a row summing to 1, or 0, by exactly 1). ``stream`` is
        accepted for the common signature; the ops run on the current stream.
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
        # learned.log_probs: non-finite rows become 0, max-subtracted log-softmax, then 0 again
        xs = torch.where(ok[:, None], x, torch.zeros_like(x))
        xs = xs - xs.max(dim=-1, keepdim=True).values
        lp = xs - xs.exp().sum(dim=-1, keepdim=True).log()
        lp = torch.where(ok[:, None], lp, torch.zeros_like(lp))
        log_probs[stage][idx] = lp
        okf = ok.to(torch.float32)
        count = okf if stage == 0 else contributed[idx] + okf
        contributed[idx] = count
        # learned.combine_log_probs: z = bias, then z + w_m * lp_m in member order
        w = self.weights[stage]
        z = self.bias[stage].expand_as(lp)
        for j in range(stage + 1):
            z = z + w[j] * (lp if j == stage else log_probs[j][idx])
        empty = count == 0
        probs = torch.where(empty[:, None], torch.zeros_like(z), _softmax(z))
        prob_sum[idx] = probs
        flag[idx] = torch.where(ok, flag[idx], torch.ones_like(flag[idx]))
        exit_and_compact(probs, empty, ok, label, conf, exit_stage, active, survivors, survivor_count, stage,
                         num_stages, threshold, kind)
