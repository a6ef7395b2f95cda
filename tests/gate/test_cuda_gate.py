"""The CUDA gate kernel (gate_step_cuda) against the NumPy reference. Skips without a GPU.

Device buffers come from CuPy when it is installed, else from PyTorch (CUDA build).
"""

from __future__ import annotations

import numpy as np
import pytest
from gate_cases import make_logits, make_logits_nonfinite_stages, run_and_compare
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS, GateState
from edge_committee.gate import gate_step_cuda

pytestmark = pytest.mark.gpu

STATE = ("prob_sum", "label", "conf", "exit_stage", "flag")


def _cupy_backend():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy.asarray, cupy.asnumpy, "cupy"
    except Exception as exc:  # noqa: BLE001 - no cupy, or no driver
        return f"cupy: {exc}"
    return "cupy: no device"


def _torch_backend():
    try:
        import torch
    except ImportError as exc:
        return f"torch: {exc}"
    if not torch.cuda.is_available():
        return "torch: no CUDA device"
    return (lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda(), lambda t: t.cpu().numpy(), "torch")


def _device_backend():
    """(to_device, to_host, name) from CuPy or PyTorch, or a string saying why there is none."""
    reasons = []
    for make in (_cupy_backend, _torch_backend):
        backend = make()
        if not isinstance(backend, str):
            return backend
        reasons.append(backend)
    return "; ".join(reasons)


@pytest.fixture(scope="module")
def device():
    backend = _device_backend()
    if isinstance(backend, str):
        pytest.skip(f"no CUDA device visible to CuPy or PyTorch ({backend})")
    return backend


@pytest.fixture(scope="module")
def cuda_ext(device, load_native_build):
    from edge_committee.gate import _ext

    module = _ext.load()
    if module is None or not getattr(module, "has_cuda", False):
        module = load_native_build(True)
    if not module.has_cuda or module.cuda_device_count() == 0:
        pytest.skip("the extension has no CUDA gate or sees no device")
    return module


class CudaImpl:
    def __init__(self, device) -> None:
        self.to_device, self.to_host, _ = device

    def start(self, n: int, c: int) -> None:
        s = GateState.start(n, c)
        self.state = {k: self.to_device(getattr(s, k)) for k in STATE}
        self.active = self.to_device(s.active)
        self.survivors = self.to_device(np.zeros(max(n, 1), np.int32))
        self.count = self.to_device(np.full(1, -7, np.int32))

    def step(self, logits, stage, num_stages, threshold, kind):
        x = self.to_device(np.ascontiguousarray(logits))
        gate_step_cuda(self.state["prob_sum"], self.state["label"], self.state["conf"], self.state["exit_stage"],
                       self.state["flag"], self.active, x, self.survivors, self.count, stage, num_stages,
                       threshold, kind)
        count = int(self.to_host(self.count)[0])  # synchronizes (legacy default stream)
        self.active = self.to_device(self.to_host(self.survivors)[:count].copy())

    def snapshot(self) -> GateState:
        return GateState(active=self.to_host(self.active), **{k: self.to_host(v) for k, v in self.state.items()})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 300),
    # Covers every kernel variant: rows in registers (1, 2, 4, 8 chunks per lane; scalar and float4 loads)
    # and the streaming passes (more than 8 chunks).
    c=st.sampled_from([1, 2, 3, 4, 7, 10, 31, 32, 33, 64, 100, 127, 129, 256, 300, 512, 999, 1000, 2048]),
    k=st.integers(1, 4),
    dtype=st.sampled_from(["float32", "float16"]),
    kind=st.sampled_from(CONFIDENCE_FUNCTIONS),
    seed=st.integers(0, 2**32 - 1),
    nonfinite=st.sampled_from([0.0, 0.05, 0.4]),
    scale=st.sampled_from([0.3, 3.0, 30.0]),
    quantiles=st.lists(st.floats(0, 1), min_size=3, max_size=3),
)
def test_cuda_gate_matches_reference(cuda_ext, device, n, c, k, dtype, kind, seed, nonfinite, scale, quantiles):
    run_and_compare(CudaImpl(device), make_logits(seed, n, c, k, dtype, nonfinite, scale), kind, quantiles)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 300),
    # rows in registers (1, 2, 4, 8 chunks; scalar and float4) and the streaming passes
    c=st.sampled_from([1, 3, 4, 33, 100, 128, 300, 1000, 1025, 2048]),
    k=st.integers(2, 4),
    dtype=st.sampled_from(["float32", "float16"]),
    kind=st.sampled_from(CONFIDENCE_FUNCTIONS),
    seed=st.integers(0, 2**32 - 2),
    quantiles=st.lists(st.floats(0, 1), min_size=3, max_size=3),
)
def test_cuda_gate_nonfinite_rows_across_stages(cuda_ext, device, n, c, k, dtype, kind, seed, quantiles):
    """Finding 19: the kernel divides by the stages that contributed (both the cached and streaming paths)."""
    run_and_compare(CudaImpl(device), make_logits_nonfinite_stages(seed, n, c, k, dtype, 3.0), kind, quantiles)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
def test_cuda_gate_4096_by_1000(cuda_ext, device, dtype, kind):
    logits = make_logits(11, 4096, 1000, 3, dtype, 0.01, 8.0)
    run_and_compare(CudaImpl(device), logits, kind, [0.4, 0.7])


def test_cuda_gate_unaligned_and_odd_sizes(cuda_ext, device):
    # C % 4 != 0 takes the scalar path; C % 4 == 0 the vectorized one; above 8 chunks per lane, streaming.
    for c in (999, 1000, 1001, 1024, 1025, 4096):
        run_and_compare(CudaImpl(device), make_logits(c, 77, c, 2, "float32", 0.1, 5.0), "margin", [0.5])


def test_cuda_gate_rejects_bad_buffers(cuda_ext, device):
    to_device = device[0]
    s = GateState.start(4, 3)
    state = [to_device(getattr(s, k)) for k in STATE]
    with pytest.raises(TypeError, match="must be a CUDA array"):
        gate_step_cuda(*state, to_device(s.active), np.zeros((4, 3), np.float32), to_device(s.active),
                       to_device(np.zeros(1, np.int32)), 0, 2, 0.5)
    with pytest.raises(ValueError, match=r"expected \(4, 3\)"):
        gate_step_cuda(*state, to_device(s.active), to_device(np.zeros((4, 2), np.float32)),
                       to_device(s.active), to_device(np.zeros(1, np.int32)), 0, 2, 0.5)


def test_cuda_gate_exits_at_equality(cuda_ext, device):
    """The ``>=`` rule at conf == threshold exactly (see test_gate_boundary.py), on the device."""
    from test_gate_boundary import check_impl

    check_impl(lambda: CudaImpl(device))
