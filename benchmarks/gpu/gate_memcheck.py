"""A short CUDA gate workload for compute-sanitizer: a few cascades, fp32/fp16, odd sizes, non-finite rows,
every confidence function, two streams. Compares with the NumPy reference too. Exit 0 = all agree.

    compute-sanitizer --tool memcheck --error-exitcode 1 python3 benchmarks/gpu/gate_memcheck.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "gate")]

from gate_cases import make_logits, run_and_compare

from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS, GateState
from edge_committee.gate import gate_step_cuda

STATE = ("prob_sum", "label", "conf", "exit_stage", "flag")


def backend():
    try:
        import cupy

        return (cupy.asarray, cupy.asnumpy, lambda: cupy.cuda.Stream(non_blocking=True),
                lambda: cupy.cuda.Device().synchronize())
    except ImportError:
        import torch

        return (lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda(), lambda t: t.cpu().numpy(),
                lambda: torch.cuda.Stream(), torch.cuda.synchronize)


class CudaImpl:
    def __init__(self, to_device, to_host, sync, stream=None) -> None:
        self.to_device, self.to_host, self.sync, self.stream = to_device, to_host, sync, stream

    def start(self, n, c):
        s = GateState.start(n, c)
        self.state = {k: self.to_device(getattr(s, k)) for k in STATE}
        self.active = self.to_device(s.active)
        self.survivors = self.to_device(np.zeros(max(n, 1), np.int32))
        self.count = self.to_device(np.zeros(1, np.int32))

    def step(self, logits, stage, num_stages, threshold, kind):
        x = self.to_device(np.ascontiguousarray(logits))
        self.sync()  # the copies ran on the legacy stream; a non-blocking stream does not wait for it
        gate_step_cuda(*(self.state[k] for k in STATE), self.active, x, self.survivors, self.count, stage,
                       num_stages, threshold, kind, stream=self.stream)
        if self.stream is not None:
            self.stream.synchronize()
        count = int(self.to_host(self.count)[0])
        self.active = self.to_device(self.to_host(self.survivors)[:count].copy())

    def snapshot(self):
        return GateState(active=self.to_host(self.active), **{k: self.to_host(v) for k, v in self.state.items()})


def main() -> None:
    to_device, to_host, new_stream, sync = backend()
    cases = 0
    for i, (n, c) in enumerate([(0, 5), (1, 1), (1, 10), (37, 7), (64, 1000), (300, 33), (1000, 1001), (20, 300), (50, 2048)]):
        for dtype in ("float32", "float16"):
            kind = CONFIDENCE_FUNCTIONS[(i + len(dtype)) % 3]
            stream = new_stream() if i % 2 else None  # the legacy stream and a non-blocking one
            run_and_compare(CudaImpl(to_device, to_host, sync, stream), make_logits(i, n, c, 3, dtype, 0.1, 6.0), kind,
                            [0.3, 0.7])
            cases += 1
    print(f"gate_memcheck: {cases} cascades agree with the reference")


if __name__ == "__main__":
    main()
