"""Benchmark the CUDA cascade gate kernel against the memory-bandwidth floor.

For batch M in {1, 64, 4096} x classes C in {10, 1000} x logits float32/float16: the kernel's device
time (CUDA events around each launch, launches queued behind a sleep kernel so host overhead does not
count; warm-up, then N iterations; median and p90), the end-to-end time of one host-loop stage
(gate_step_cuda + the 4-byte survivor-count read back), and the floor: the bytes the stage must move
(logits read once, the active rows of prob_sum read and written, indices and outputs) divided by the
device-to-device copy bandwidth measured in the same run (bytes read + written per second).

Needs PyTorch with CUDA and edge_committee._C built with CUDA (or EC_EXTENSION_PATH). Usage:

    python benchmarks/bench_gate.py [--iterations 200] [--json out.json] [--markdown docs/gate_benchmark.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCHES = (1, 64, 4096)
CLASSES = (10, 1000)
DTYPES = ("float32", "float16")
#: Done-when: at 4096 x 1000 the kernel is within this factor of the floor.
FLOOR_FACTOR = 3.0


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def copy_bandwidth(torch, nbytes: int = 1 << 28, repeats: int = 20) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written (median)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * nbytes / statistics.median(times)


def gate_bytes(m: int, c: int, itemsize: int) -> int:
    """Bytes the benchmarked stage must move at least (nobody exits, no flags): logits read once, the
    prob_sum rows read and written, the active indices read, the survivor indices and count written."""
    per_row = c * itemsize + 2 * c * 4 + 4 + 4
    return m * per_row + 4


class Case:
    """Device buffers for one (M, C, dtype) configuration and a raw launcher with no Python checks."""

    def __init__(self, torch, ext, m: int, c: int, dtype: str) -> None:
        self.torch, self.ext, self.m, self.c, self.dtype = torch, ext, m, c, dtype
        n = m
        gen = torch.Generator(device="cuda").manual_seed(m * 7919 + c)
        tdtype = torch.float32 if dtype == "float32" else torch.float16
        self.logits = (torch.randn(m, c, device="cuda", generator=gen) * 4).to(tdtype)
        self.active = torch.arange(m, dtype=torch.int32, device="cuda")
        self.prob_sum = torch.zeros(n, c, device="cuda")
        self.label = torch.full((n,), -1, dtype=torch.int32, device="cuda")
        self.conf = torch.full((n,), float("nan"), device="cuda")
        self.exit_stage = torch.full((n,), -1, dtype=torch.int32, device="cuda")
        self.flag = torch.zeros(n, dtype=torch.int32, device="cuda")
        self.survivors = torch.empty(m, dtype=torch.int32, device="cuda")
        self.count = torch.zeros(1, dtype=torch.int32, device="cuda")
        self.workspace_bytes = ext.workspace_size(m)
        self.workspace = torch.zeros(self.workspace_bytes, dtype=torch.uint8, device="cuda")
        self.stream = torch.cuda.current_stream().cuda_stream
        # Stage 0 of 2 with a threshold above 1: nobody exits, every index is compacted (the most writes).
        self.args = (self.logits.data_ptr(), dtype, self.active.data_ptr(), m, c, n, self.prob_sum.data_ptr(),
                     self.label.data_ptr(), self.conf.data_ptr(), self.exit_stage.data_ptr(), self.flag.data_ptr(),
                     self.survivors.data_ptr(), self.count.data_ptr(), 0, 2, 2.0, 0)

    def launch(self) -> None:
        self.ext.gate_step_cuda(*self.args, stream=self.stream, workspace=self.workspace.data_ptr(),
                                workspace_bytes=self.workspace_bytes)

    def reset(self) -> None:
        self.prob_sum.zero_()

    def kernel_times(self, warmup: int, iterations: int) -> list[float]:
        """Device time per launch in seconds (events around each launch, queued behind a sleep)."""
        torch = self.torch
        for _ in range(warmup):
            self.launch()
        torch.cuda.synchronize()
        times: list[float] = []
        chunk = 100
        for first in range(0, iterations, chunk):
            n = min(chunk, iterations - first)
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
            torch.cuda._sleep(20_000_000)  # keep the GPU busy while the host queues the launches
            for start, end in events:
                start.record()
                self.launch()
                end.record()
            torch.cuda.synchronize()
            times += [start.elapsed_time(end) / 1e3 for start, end in events]
            self.reset()
        return times

    def end_to_end_times(self, iterations: int) -> list[float]:
        """Host time of one host-loop stage: launch, then read the 4-byte survivor count back."""
        times = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            self.launch()
            int(self.count.item())
            times.append(time.perf_counter() - t0)
        self.reset()
        return times


def machine(torch) -> dict:
    props = torch.cuda.get_device_properties(0)
    info = {"gpu": props.name, "sms": props.multi_processor_count, "memory_gib": round(props.total_memory / 2**30, 1),
            "torch": torch.__version__, "cuda_runtime": torch.version.cuda, "python": platform.python_version(),
            "host": platform.node()}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,clocks.max.mem",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=False).stdout.strip()
        info["nvidia_smi"] = smi
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def run(iterations: int, warmup: int) -> dict:
    try:
        import torch
    except ImportError:
        sys.exit("bench_gate.py needs PyTorch with CUDA")
    if not torch.cuda.is_available():
        sys.exit("bench_gate.py needs a CUDA device")
    from edge_committee.gate import _ext

    ext = _ext.load()
    if ext is None or not getattr(ext, "has_cuda", False):
        sys.exit(f"edge_committee._C with CUDA is needed ({_ext.error() or 'built without CUDA'}); "
                 "build it or set EC_EXTENSION_PATH")
    bandwidth = copy_bandwidth(torch)
    rows = []
    for dtype in DTYPES:
        for c in CLASSES:
            for m in BATCHES:
                case = Case(torch, ext, m, c, dtype)
                kernel = case.kernel_times(warmup, iterations)
                e2e = case.end_to_end_times(max(20, iterations // 4))
                nbytes = gate_bytes(m, c, 4 if dtype == "float32" else 2)
                floor = nbytes / bandwidth
                median = statistics.median(kernel)
                rows.append({
                    "batch": m, "classes": c, "dtype": dtype, "bytes": nbytes,
                    "kernel_median_us": median * 1e6, "kernel_p90_us": percentile(kernel, 90) * 1e6,
                    "kernel_p99_us": percentile(kernel, 99) * 1e6,
                    "end_to_end_median_us": statistics.median(e2e) * 1e6,
                    "end_to_end_p90_us": percentile(e2e, 90) * 1e6,
                    "floor_us": floor * 1e6, "x_floor": median / floor,
                    "achieved_gb_s": nbytes / median / 1e9,
                })
                print(f"{dtype:8s} M={m:5d} C={c:5d}  kernel median {median * 1e6:8.2f} us  "
                      f"p90 {rows[-1]['kernel_p90_us']:8.2f} us  floor {floor * 1e6:8.2f} us  "
                      f"x{median / floor:6.2f}  e2e {rows[-1]['end_to_end_median_us']:8.1f} us", flush=True)
    big = [r for r in rows if r["batch"] == 4096 and r["classes"] == 1000]
    return {
        "machine": machine(torch),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "iterations": iterations, "warmup": warmup,
        "copy_bandwidth_gb_s": bandwidth / 1e9,
        "rows": rows,
        "done_when": {"criterion": f"4096 x 1000 kernel median within {FLOOR_FACTOR}x of the floor",
                      "x_floor": {r["dtype"]: r["x_floor"] for r in big},
                      "passed": all(r["x_floor"] <= FLOOR_FACTOR for r in big)},
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Cascade gate kernel benchmark",
        "",
        "Written by `benchmarks/bench_gate.py` (run on the GPU machine by `benchmarks/gpu/run_gate_checks.sh`).",
        "",
        (f"- Machine: {m['gpu']} ({m['sms']} SMs, {m['memory_gib']} GiB), {m.get('nvidia_smi', '')}; "
        f"PyTorch {m['torch']} (CUDA {m['cuda_runtime']}), Python {m['python']}"),
        f"- Command: `{result['command']}`",
        (f"- Method: CUDA events around each launch (launches queued behind a sleep kernel), "
        f"{result['warmup']} warm-up launches, then {result['iterations']} timed; one launch per stage "
        "(stage 0 of 2, nobody exits, so all M indices are compacted)."),
        (f"- Floor: bytes the stage must move / device-to-device copy bandwidth measured in the same run "
        f"({result['copy_bandwidth_gb_s']:.0f} GB/s, read + write). End-to-end: host time of one host-loop "
        "stage (launch + 4-byte survivor-count read back)."),
        f"- Done-when ({result['done_when']['criterion']}): "
        + ", ".join(f"{k} x{v:.2f}" for k, v in result["done_when"]["x_floor"].items())
        + (" -- **passed**" if result["done_when"]["passed"] else " -- **NOT passed**"),
        "",
        ("| logits | batch | classes | bytes | kernel median (us) | p90 (us) | p99 (us) | floor (us) | x floor "
        "| GB/s | end-to-end median (us) |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['dtype']} | {r['batch']} | {r['classes']} | {r['bytes']} | {r['kernel_median_us']:.2f} "
                     f"| {r['kernel_p90_us']:.2f} | {r['kernel_p99_us']:.2f} | {r['floor_us']:.2f} "
                     f"| {r['x_floor']:.2f} | {r['achieved_gb_s']:.0f} | {r['end_to_end_median_us']:.1f} |")
    lines += ["", ("Small batches are launch-latency bound (a few microseconds whatever the bytes); the floor "
              "matters at 4096 x 1000."), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200, help="timed launches per case (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed launches first (default 20)")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the Markdown table here")
    args = parser.parse_args()
    result = run(args.iterations, args.warmup)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(result))
    print(f"done-when: {result['done_when']}")
    sys.exit(0 if result["done_when"]["passed"] else 1)


if __name__ == "__main__":
    main()
