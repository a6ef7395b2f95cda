"""Cascades with known logits for the device runtime, and their comparison with the NumPy reference.

Shared by the CPU tests (the runtime on CPU torch tensors) and the GPU tests (graphs, CUDA gate).
Each image carries its sample id in its pixels; a :class:`TableMember` reads the id back from its
(unscaled, unresized) input and returns that sample's row of a logits table, so the runtime's
gathering, padding and compaction decide exactly which rows reach the gate. Thresholds are chosen
at least ``GAP`` away from every confidence (``gate_cases.safe_threshold``), so comparisons with the
reference are well defined.
"""

from __future__ import annotations

import numpy as np
from gate_cases import CONF_ATOL, GAP, PROB_ATOL, make_logits, safe_threshold, stage_confidences

from edge_committee.backend.base.device import DeviceMember
from edge_committee.cascade.reference import GateState, gate_step
from edge_committee.spec.preprocess import Preprocessing

#: The preprocessing of a table member: raw values, no resize (source images are ID_HW).
ID_HW = (2, 3)
ID_PREPROCESSING = Preprocessing.from_dict({"size": list(ID_HW), "color": "gray", "scale": 1.0, "offset": 0.0})


def id_images(n: int, start: int = 0) -> np.ndarray:
    """(n, 2, 3, 1) uint8 images whose pixels [0, 0] and [0, 1] hold the sample id (base 256)."""
    ids = np.arange(start, start + n)
    x = np.zeros((n, *ID_HW, 1), np.uint8)
    x[:, 0, 0, 0], x[:, 0, 1, 0] = ids % 256, ids // 256
    x[:, 1] = 255 - x[:, 0]  # other pixels vary too
    return x


class TableMember(DeviceMember):
    """A member whose logits are a fixed table indexed by the sample id in its input (capturable)."""

    input_shape = (1, *ID_HW)
    input_dtype = "float32"

    def __init__(self, name: str, table: np.ndarray) -> None:
        self.name = name
        self.table_np = np.ascontiguousarray(table, np.float32)
        self.num_classes = int(table.shape[1])
        self.table = None

    def activate(self, device=0) -> None:
        import torch

        dev = torch.device(device) if isinstance(device, str) else torch.device("cuda", device)
        self.table = torch.from_numpy(self.table_np).to(dev)

    def deactivate(self) -> None:
        self.table = None

    def enqueue(self, inp, out, stream) -> None:
        import torch

        ids = (inp[:, 0, 0, 0] + 256.0 * inp[:, 0, 0, 1]).round().long()
        ids = ids.clamp(0, self.table.shape[0] - 1)
        if stream is not None:
            with torch.cuda.stream(stream):
                out.copy_(self.table.index_select(0, ids))
        else:
            out.copy_(self.table.index_select(0, ids))


def make_case(seed: int, n: int, c: int, k: int, kind: str, quantiles=(0.3, 0.6, 0.8), nonfinite: float = 0.1,
              scale: float = 6.0):
    """(member logits tables, thresholds, reference GateState) with thresholds safe for comparison."""
    logits = make_logits(seed, n, c, k, "float32", nonfinite, scale)
    ref = GateState.start(n, c)
    thresholds = []
    for stage, x in enumerate(logits):
        if ref.active.size == 0:
            thresholds.append(0.5)
            continue
        xa = x[ref.active]
        t = np.inf if stage == k - 1 else safe_threshold(stage_confidences(ref, xa, stage, kind),
                                                        quantiles[stage % len(quantiles)])
        thresholds.append(t)
        gate_step(ref, xa, stage, k, t, kind)
    return logits, thresholds[: k - 1], ref


def comparable_labels(ref: GateState) -> np.ndarray:
    """Samples whose reference label is not a near-tie of the top-2 mean probabilities."""
    mean = ref.mean_probs()
    if mean.shape[1] < 2:
        return np.ones(len(mean), bool)
    top2 = np.sort(mean, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    return (gap == 0) | (gap > GAP)


def assert_matches_reference(pred, ref: GateState, where: str = "") -> None:
    """A :class:`Prediction` equals the reference state (tolerances as the gate tests)."""
    assert np.array_equal(pred.exit_stage, ref.exit_stage), f"{where}: exit stages differ"
    assert np.array_equal(pred.flags, ref.flag), f"{where}: flags differ"
    ok = comparable_labels(ref)
    assert np.array_equal(pred.labels[ok], ref.label[ok]), f"{where}: labels differ"
    assert np.abs(pred.probs - ref.mean_probs()).max(initial=0) <= PROB_ATOL, f"{where}: probs differ"
    assert np.array_equal(np.isnan(pred.confidence), np.isnan(ref.conf)), f"{where}: NaN confidences differ"
    both = ~np.isnan(ref.conf)
    assert np.allclose(pred.confidence[both], ref.conf[both], rtol=0, atol=CONF_ATOL), f"{where}: confidences differ"
