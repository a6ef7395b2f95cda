"""The device runtime's logic on CPU torch tensors against the NumPy reference.

Same code path as on the GPU (buffers, buckets, sink rows, survivor fix-up, stage functions,
finalize) minus the CUDA graphs and kernels: the gate runs as torch ops (compared with the reference
gate here), the stages run eagerly.
"""

from __future__ import annotations

import numpy as np
import pytest
from device_cases import ID_PREPROCESSING, TableMember, assert_matches_reference, id_images, make_case
from gate_cases import make_logits, run_and_compare

from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS, GateState

torch = pytest.importorskip("torch")

from edge_committee.backend.device import DeviceCascade, default_buckets  # noqa: E402
from edge_committee.backend.device.gate import fix_survivors_torch, gate_step_torch  # noqa: E402

STATE = ("prob_sum", "label", "conf", "exit_stage", "flag")


class TorchGate:
    """gate_step_torch behind the gate tests' GateImpl protocol (CPU tensors)."""

    def start(self, n: int, c: int) -> None:
        s = GateState.start(n, c)
        self.state = {k: torch.from_numpy(getattr(s, k).copy()) for k in STATE}
        self.active = torch.from_numpy(s.active.copy())
        self.survivors = torch.full((max(n, 1),), -7, dtype=torch.int32)
        self.count = torch.zeros(1, dtype=torch.int32)

    def step(self, logits, stage, num_stages, threshold, kind) -> None:
        gate_step_torch(*(self.state[k] for k in STATE), self.active, torch.from_numpy(np.ascontiguousarray(logits)),
                        self.survivors, self.count, stage, num_stages, threshold, kind)
        self.active = self.survivors[: int(self.count[0])].clone()

    def snapshot(self) -> GateState:
        return GateState(active=self.active.numpy().copy(), **{k: v.numpy().copy() for k, v in self.state.items()})


@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("n,c", [(0, 5), (1, 1), (1, 10), (37, 7), (64, 1000), (300, 33)])
def test_torch_gate_matches_reference(n, c, dtype, kind):
    run_and_compare(TorchGate(), make_logits(n + c, n, c, 3, dtype, 0.1, 6.0), kind, [0.3, 0.7])


def test_fix_survivors():
    cap, b = 8, 6
    pos = torch.arange(cap, dtype=torch.int32)
    src = torch.tensor([5, 2, 11, 3, 9, 7, 0, 1], dtype=torch.int32)  # 11, 9 are sinks (>= cap)
    act, gidx, real = torch.full((cap,), -1, dtype=torch.int32), torch.full((cap,), -1, dtype=torch.int32), \
        torch.zeros(1, dtype=torch.int32)
    fix_survivors_torch(src, torch.tensor([5], dtype=torch.int32), b, cap, act, gidx, real, pos)
    # entries past count (5) and sinks become sinks cap + j; their image row is 0
    assert act[:b].tolist() == [5, 2, 8 + 2, 3, 8 + 4, 8 + 5]
    assert gidx[:b].tolist() == [5, 2, 0, 3, 0, 0]
    assert real.item() == 3
    assert act[b:].tolist() == [-1, -1]  # nothing beyond b is written
    fix_survivors_torch(None, torch.tensor([2], dtype=torch.int32), 4, cap, act, gidx, real, pos)
    assert act[:4].tolist() == [0, 1, 10, 11] and gidx[:4].tolist() == [0, 1, 0, 0] and real.item() == 2
    fix_survivors_torch(act, torch.tensor([4], dtype=torch.int32), 4, cap, act, gidx, real, pos)  # in place
    assert act[:4].tolist() == [0, 1, 10, 11] and real.item() == 2


def table_cascade(tables, thresholds, kind, **options) -> DeviceCascade:
    members = [TableMember(f"m{k}", t) for k, t in enumerate(tables)]
    labels = [f"c{i}" for i in range(tables[0].shape[1])]
    return DeviceCascade(members, [ID_PREPROCESSING] * len(members), thresholds, kind, labels, device="cpu",
                         **options)


@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
@pytest.mark.parametrize("n", [0, 1, 2, 7, 16, 37])
def test_runtime_matches_reference(n, kind):
    """Exits at every stage, NaN/Inf rows, batch 1, odd and empty batches, a batch over max_batch."""
    tables, thresholds, ref = make_case(seed=n, n=n, c=6, k=4, kind=kind)
    runtime = table_cascade(tables, thresholds, kind, max_batch=16)
    with runtime:
        pred = runtime.run(id_images(n))
    assert runtime.mode == "eager" and runtime.gate_name == "torch ops"
    assert_matches_reference(pred, ref, f"n={n} {kind}")
    if n >= 16:
        assert len(set(ref.exit_stage.tolist())) >= 3, "the case should exit at several stages"
        assert ref.flag.any(), "the case should hold non-finite logits"


def test_every_sample_to_the_last_stage_and_none_past_the_first():
    """Thresholds above every confidence (all stages run) and below (stage 0 only)."""
    n, c = 13, 5
    tables = make_logits(3, n, c, 3, "float32", 0.0, 4.0)
    for t, stages in ((2.0, {2}), (-1.0, {0})):
        with table_cascade(tables, [t, t], "max_prob", max_batch=8) as runtime:
            pred = runtime.run(id_images(n))
        assert set(pred.exit_stage.tolist()) == stages
        assert np.isfinite(pred.confidence).all() and not pred.flags.any()


def test_all_non_finite_gives_invalid_labels():
    tables = [np.full((5, 3), np.nan, np.float32), np.full((5, 3), np.inf, np.float32)]
    with table_cascade(tables, [0.5], "max_prob", max_batch=4) as runtime:
        pred = runtime.run(id_images(5))
    assert pred.labels.tolist() == [-1] * 5 and pred.flags.tolist() == [1] * 5
    assert np.isnan(pred.confidence).all() and pred.exit_stage.tolist() == [1] * 5


def test_list_of_images_of_two_sizes():
    """Images of different sizes run as one group per size; the outputs keep the input order."""
    n, c = 9, 4
    tables, thresholds, ref = make_case(seed=5, n=n, c=c, k=2, kind="margin")
    members = [TableMember(f"m{k}", t) for k, t in enumerate(tables)]
    # stretch to 2x3 from 4x6 (pixel ids survive: nearest picks pixel 2i+1, 2j+1; we store ids there too)
    pp = ID_PREPROCESSING.__class__.from_dict({"size": [2, 3], "color": "gray", "scale": 1.0, "offset": 0.0,
                                                "interpolation": "nearest"})
    images = [im for im in id_images(n)]
    big = [np.repeat(np.repeat(im, 2, axis=0), 2, axis=1) for im in images]
    mixed = [big[i] if i % 3 == 0 else images[i] for i in range(n)]
    with DeviceCascade(members, [pp, pp], thresholds, "margin", [f"c{i}" for i in range(c)], device="cpu",
                       max_batch=4) as runtime:
        pred = runtime.run(mixed)
    assert_matches_reference(pred, ref, "mixed sizes")


def test_buckets_and_options():
    assert default_buckets(1) == (1,)
    assert default_buckets(64) == (1, 2, 4, 8, 16, 32, 64)
    assert default_buckets(48) == (1, 2, 4, 8, 16, 32, 48)
    tables = make_logits(0, 4, 3, 2, "float32", 0.0, 1.0)
    runtime = table_cascade(tables, [0.5], "max_prob", buckets=[3, 1, 8])
    assert runtime.buckets == (1, 3, 8) and runtime.bucket(2) == 3 and runtime.bucket(8) == 8
    from edge_committee.errors import EdgeCommitteeError

    for bad in ({"mode": "fast"}, {"gate_impl": "numpy"}, {"max_batch": 0}):
        with pytest.raises(EdgeCommitteeError, match=next(iter(bad))):
            table_cascade(tables, [0.5], "max_prob", **bad)


def test_tensor_input_on_cpu():
    """A torch tensor of frames is taken as it is; the outputs stay tensors."""
    tables, thresholds, ref = make_case(seed=2, n=11, c=4, k=3, kind="neg_entropy")
    with table_cascade(tables, thresholds, "neg_entropy", max_batch=8) as runtime:
        pred = runtime.run(torch.from_numpy(id_images(11)))
    assert isinstance(pred.labels, torch.Tensor)
    pred.labels, pred.probs, pred.confidence, pred.exit_stage, pred.flags = (
        t.numpy() for t in (pred.labels, pred.probs, pred.confidence, pred.exit_stage, pred.flags))
    assert_matches_reference(pred, ref, "tensor input")
