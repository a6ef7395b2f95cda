"""Per-stage buckets (plain Python), the path a batch takes, the conditional graph's structure (fake driver),
the runtime's host loop using exactly those buckets (CPU), and the device kernels compiling with nvcc (no GPU).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import types

import numpy as np
import pytest

from edge_committee.backend.device.buckets import (IF_GRAPH_MAX_BUCKET, bucket_for, choose_path, default_buckets,
                                                   stage_buckets, stage_work, switch_value)

BUCKETS = default_buckets(256)  # 1, 2, 4, ..., 256


@pytest.mark.parametrize("counts, want", [
    ([1], [1]), ([3, 3, 3], [4, 4, 4]), ([64, 5, 1], [64, 8, 1]), ([256, 129, 128, 0, 7], [256, 256, 128]),
    ([200, 0, 5], [256]), ([0, 3], []),
])
def test_stage_buckets(counts, want):
    assert stage_buckets(counts, BUCKETS) == want
    assert stage_buckets(counts, BUCKETS, per_stage=False) == ([want[0]] * len(want) if want else [])


def test_switch_value_picks_the_case_of_stage_buckets():
    """The SWITCH value the fused kernel computes selects exactly the bucket of stage_buckets (a value >= the
    number of cases runs none; cases are the buckets <= b0)."""
    for n in range(1, 257):
        b0 = bucket_for(n, BUCKETS)
        cases = [b for b in BUCKETS if b <= b0]
        for count in range(0, n + 1):
            v = switch_value(count, BUCKETS)
            if count == 0:
                assert v >= len(cases)
            else:
                assert v < len(cases) and cases[v] == bucket_for(count, BUCKETS)


def test_work_is_proportional_to_survivors():
    """Per stage, the bucket is less than twice the survivors (powers of two), so the members' work follows the
    survivors; the IF-only graph does the first bucket's work at every stage."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(1, 257))
        counts = [n] + sorted(rng.integers(0, n + 1, 3).tolist(), reverse=True)
        for c, b in zip(counts, stage_buckets(counts, BUCKETS)):
            assert c <= b < 2 * c
        assert stage_work(counts, BUCKETS) < 2 * sum(counts)
        assert stage_work(counts, BUCKETS) <= stage_work(counts, BUCKETS, per_stage=False)
    # batch 256, one sample left after stage 0: 256 + 1 + 1 rows, not 3 x 256
    assert stage_work([256, 1, 1], BUCKETS) == 258 and stage_work([256, 1, 1], BUCKETS, per_stage=False) == 768
    costs = [1.0, 4.0, 16.0]  # MACs per sample grow along the cascade
    assert stage_work([64, 8, 2], BUCKETS, costs) == 64 + 32 + 32


def test_choose_path():
    assert choose_path(256, switch_ok=True, if_ok=True) == "switch"
    assert choose_path(IF_GRAPH_MAX_BUCKET, switch_ok=False, if_ok=True) == "if"
    assert choose_path(IF_GRAPH_MAX_BUCKET * 2, switch_ok=False, if_ok=True) == "host"
    assert choose_path(1, switch_ok=False, if_ok=False) == "host"


# ------------------------------------------------------------------ the graph's structure, with a fake driver
class FakeDriver:
    """Records the graph the builder makes (nodes with their parent graph, dependencies and payload)."""

    CU_GRAPH_COND_ASSIGN_DEFAULT = 1

    def __init__(self) -> None:
        self.nodes, self.handles, self.counter = [], [], itertools.count(1)
        self.CUgraphNodeType = types.SimpleNamespace(CU_GRAPH_NODE_TYPE_CONDITIONAL="COND")
        self.CUgraphConditionalNodeType = types.SimpleNamespace(CU_GRAPH_COND_TYPE_IF="IF",
                                                                CU_GRAPH_COND_TYPE_SWITCH="SWITCH")

    CUgraph = CUstream = staticmethod(lambda x: x)

    def CUDA_KERNEL_NODE_PARAMS(self):  # noqa: N802 - the driver's name
        return types.SimpleNamespace()

    def CUgraphNodeParams(self):  # noqa: N802
        return types.SimpleNamespace(conditional=types.SimpleNamespace())

    def _node(self, parent, deps, kind, payload):
        node = f"n{next(self.counter)}"
        self.nodes.append((node, parent, list(deps), kind, payload))
        return 0, node

    def cuGraphCreate(self, flags):  # noqa: N802
        return 0, "top"

    def cuStreamGetCtx(self, stream):  # noqa: N802
        return 0, "ctx"

    def cuGraphConditionalHandleCreate(self, graph, ctx, default, flags):  # noqa: N802
        h = 1000 + len(self.handles)
        self.handles.append((h, graph, default, flags))
        return 0, h

    def cuGraphAddChildGraphNode(self, parent, deps, n, child):  # noqa: N802
        return self._node(parent, deps, "child", child)

    def cuGraphAddKernelNode(self, parent, deps, n, params):  # noqa: N802
        return self._node(parent, deps, "kernel", params.func)

    def cuGraphAddNode_v2(self, parent, deps, data, n, params):  # noqa: N802
        c = params.conditional
        c.phGraph_out = [f"body{next(self.counter)}" for _ in range(c.size)]
        return self._node(parent, deps, c.type, (c.handle, c.size, list(c.phGraph_out)))

    def cuGraphInstantiate(self, graph, flags):  # noqa: N802
        return 0, "exec"

    def cuGraphExecDestroy(self, e):  # noqa: N802
        return (0,)

    def cuGraphDestroy(self, g):  # noqa: N802
        return (0,)


@pytest.mark.parametrize("kind", ["switch", "if"])
def test_conditional_graph_structure(kind, monkeypatch):
    torch = pytest.importorskip("torch")
    from edge_committee.backend.device import graph as graph_mod

    cu = FakeDriver()
    monkeypatch.setattr(graph_mod, "driver", lambda: cu)
    monkeypatch.delenv("EC_GRAPH_SETTER", raising=False)
    b0, k = 4, 3
    cases = [1, 2, 4] if kind == "switch" else [4]
    raw = lambda s, b: 100 * s + b  # noqa: E731 - stand-ins for the raw cudaGraph_t of stage s at bucket b
    stages = [{b0: raw(0, 4)}] + [{b: raw(s, b) for b in cases} for s in range(1, k)]
    kernels = types.SimpleNamespace(copy_slots="copy", set_condition="set")
    slots = torch.zeros((k, 2), dtype=torch.int64)
    g = graph_mod.ConditionalCascadeGraph(stages, 9999, torch.zeros(1, dtype=torch.int32), kernels,
                                          types.SimpleNamespace(cuda_stream=7), kind=kind, slots=slots,
                                          buckets_dev=torch.tensor([1, 2, 4, 8], dtype=torch.int32))
    assert not g.separate_setters and g.exec == "exec"
    top = [n for n in cu.nodes if n[1] == "top"]
    want_kind = kind.upper()
    assert [n[3] for n in top] == ["kernel", "child", want_kind, want_kind, "child"]  # no setter nodes: fused
    assert top[0][4] == "copy" and top[1][4] == raw(0, 4) and top[-1][4] == 9999
    for a, b in zip(top, top[1:]):  # a chain
        assert b[2] == [a[0]]
    default = len(cases) if kind == "switch" else 0
    assert [(graph, d) for _, graph, d, _ in cu.handles] == [("top", default)] * (k - 1)
    kind_id = 2 if kind == "switch" else 1
    assert g.table.tolist() == [[0, 0]] + [[h, kind_id] for h, *_ in cu.handles]  # row s: stage s's handle
    for s, node in enumerate(top[2:4], start=1):
        handle, size, bodies = node[4]
        assert handle == cu.handles[s - 1][0] and size == len(cases)
        for body, b in zip(bodies, cases):  # case i runs stage s at bucket cases[i]
            assert [n[4] for n in cu.nodes if n[1] == body] == [raw(s, b)]


def test_separate_setter_nodes(monkeypatch):
    torch = pytest.importorskip("torch")
    from edge_committee.backend.device import graph as graph_mod

    cu = FakeDriver()
    monkeypatch.setattr(graph_mod, "driver", lambda: cu)
    monkeypatch.setenv("EC_GRAPH_SETTER", "node")
    stages = [{2: 2}, {1: 101, 2: 102}]
    g = graph_mod.ConditionalCascadeGraph(stages, 9999, torch.zeros(1, dtype=torch.int32),
                                          types.SimpleNamespace(copy_slots="copy", set_condition="set"),
                                          types.SimpleNamespace(cuda_stream=7), kind="switch",
                                          slots=torch.zeros((2, 2), dtype=torch.int64),
                                          buckets_dev=torch.tensor([1, 2], dtype=torch.int32))
    assert g.separate_setters
    assert [n[3] for n in cu.nodes if n[1] == "top"] == ["child", "kernel", "SWITCH", "child"]


# ------------------------------------------------------------------ the runtime's host loop uses these buckets
def test_host_loop_runs_each_stage_at_its_survivors_bucket(monkeypatch):
    pytest.importorskip("torch")
    from device_cases import ID_PREPROCESSING, TableMember, assert_matches_reference, id_images, make_case

    from edge_committee.backend.device import DeviceCascade
    from edge_committee.backend.device.stages import ShapeContext
    from edge_committee.cascade.reference import GateState, gate_step

    n, k = 37, 4
    tables, thresholds, ref = make_case(seed=5, n=n, c=6, k=k, kind="max_prob")
    state, counts = GateState.start(n, 6), []
    for stage, x in enumerate(tables):  # survivors entering each stage, from the reference
        counts.append(len(state.active))
        if len(state.active) == 0:
            break
        gate_step(state, x[state.active], stage, k, thresholds[stage] if stage < k - 1 else np.inf, "max_prob")
    used = []
    original = ShapeContext.stage
    monkeypatch.setattr(ShapeContext, "stage", lambda self, s, b: used.append((s, b)) or original(self, s, b))
    members = [TableMember(f"m{i}", t) for i, t in enumerate(tables)]
    with DeviceCascade(members, [ID_PREPROCESSING] * k, thresholds, "max_prob", [str(i) for i in range(6)],
                       device="cpu", max_batch=64) as rt:
        used.clear()
        pred = rt.run(id_images(n))
        assert rt.last_path == "eager"
    assert_matches_reference(pred, ref, "cpu host loop")
    assert used == list(enumerate(stage_buckets(counts, rt.buckets)))
    assert len(set(b for _, b in used)) > 1  # the case re-buckets


# ------------------------------------------------------------------ the kernels compile (nvcc; cannot run here)
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
@pytest.mark.parametrize("arch", ["compute_90", "compute_87"])
def test_device_kernels_compile(arch, tmp_path):
    from edge_committee.backend.device.kernels import SOURCE

    src = tmp_path / "k.cu"
    src.write_text(SOURCE)
    out = tmp_path / "k.ptx"
    proc = subprocess.run(["nvcc", "-ptx", f"-arch={arch}", "-std=c++17", str(src), "-o", str(out)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    ptx = out.read_text()
    for entry in ("ec_fix_and_set", "ec_copy_slots", "ec_set_condition"):
        assert f".entry {entry}(" in ptx
    assert ".extern .func cudaGraphSetConditional" in ptx  # resolved by the driver at module load


def test_a_gate_that_fuses_the_fix_up_replaces_the_separate_step(monkeypatch):
    """Where the CUDA gate kernel does the fix-up in its last block (GateFix), the stage passes it the fix-up's
    buffers and runs no separate fix-up; emulated here by the torch gate + the torch fix-up, on the CPU."""
    torch = pytest.importorskip("torch")
    from device_cases import ID_PREPROCESSING, TableMember, assert_matches_reference, id_images, make_case

    from edge_committee.backend.device import DeviceCascade
    from edge_committee.backend.device.gate import fix_survivors_torch, gate_step_torch
    from edge_committee.backend.device.stages import ShapeContext

    separate, fused_calls = [], []
    original = ShapeContext._fix
    monkeypatch.setattr(ShapeContext, "_fix", lambda self, src, *a, **kw: (separate.append(src is not None),
                                                                            original(self, src, *a, **kw)))
    tables, thresholds, ref = make_case(seed=9, n=21, c=5, k=3, kind="margin")
    members = [TableMember(f"m{i}", t) for i, t in enumerate(tables)]
    with DeviceCascade(members, [ID_PREPROCESSING] * 3, thresholds, "margin", [str(i) for i in range(5)],
                       device="cpu", max_batch=32) as rt:
        assert rt.gate_fuses_fix is False  # the torch gate never fuses
        pos = torch.arange(rt.capacity, dtype=torch.int32)

        def fused_gate(*args, stream=None, fix=None, **kw):
            gate_step_torch(*args, stream=stream, **kw)
            if fix is not None:
                fused_calls.append((fix["rows"], fix["capacity"], int(fix["slot"].data_ptr()) != 0))
                fix_survivors_torch(args[7], args[8], fix["rows"], fix["capacity"], args[7], fix["gather_index"],
                                    fix["real_count"], pos)

        rt.gate_step, rt.gate_fuses_fix = fused_gate, True
        pred = rt.run(id_images(21))
    assert_matches_reference(pred, ref, "fused fix-up")
    assert not any(separate)  # only stage 0's initial fill, never the step after a gate
    assert fused_calls and all(c[1] == 32 and c[2] for c in fused_calls)
