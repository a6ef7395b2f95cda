"""Pure control overhead of the device runtime: K *empty* members, host loop vs graph mode, at batch 1.

An empty member writes zero logits (one tiny kernel), so every stage's confidence is 1/C, below the
threshold 2.0: every stage runs. The headline per-stage figure is the **slope** between two chain
lengths, ``(e2e(K2) - e2e(K1)) / (K2 - K1)``: the cost of one more stage (gather, preprocessing of a
2x3 image, the gate, the survivor fix-up, the conditional node), without the per-call upload and
copy-back that end-to-end time divided by K would include.

    python3 benchmarks/gpu/bench_control.py [--chains 2 8] [--repeats 300] [--json F] [--markdown F]
    python3 benchmarks/gpu/bench_control.py --cpu-smoke   # the same code eagerly on the CPU (checks the script)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge_committee.backend.base.device import DeviceMember  # noqa: E402
from edge_committee.spec.preprocess import Preprocessing  # noqa: E402

HW, CLASSES = (2, 3), 4
PREPROCESSING = Preprocessing.from_dict({"size": list(HW), "color": "gray", "scale": 1.0, "offset": 0.0})


class EmptyMember(DeviceMember):
    """Zero logits, one kernel: the member costs (almost) nothing, so the runtime's control is what is timed."""

    input_shape, input_dtype, num_classes = (1, *HW), "float32", CLASSES

    def __init__(self, name: str) -> None:
        self.name = name

    def activate(self, device=0) -> None:
        pass

    def deactivate(self) -> None:
        pass

    def enqueue(self, inp, out, stream) -> None:
        out.zero_()  # on the current stream: the runtime enqueues stages inside its stream's context


def e2e_us(runtime, image: np.ndarray, repeats: int) -> list[float]:
    for _ in range(20):
        runtime.run(image)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runtime.run(image)
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def measure(chains: list[int], repeats: int, device) -> list[dict]:
    from edge_committee.backend.device import DeviceCascade

    image = np.zeros((1, *HW, 1), np.uint8)
    rows = []
    for mode in ("graph", "host"):
        medians = {}
        for k in chains:
            members = [EmptyMember(f"empty{i}") for i in range(k)]
            with DeviceCascade(members, [PREPROCESSING] * k, [2.0] * (k - 1), "max_prob",
                               [str(c) for c in range(CLASSES)], device=device, mode=mode, max_batch=1) as rt:
                rt.warmup((*HW, 1), [1])
                times = e2e_us(rt, image, repeats)
                assert int(rt.run(image).exit_stage[0]) == k - 1, "every stage must run"
                medians[k] = statistics.median(times)
                rows.append({"mode": mode, "ran": rt.last_path or rt.mode, "stages": k, "e2e_median_us": medians[k],
                             "e2e_p90_us": float(np.percentile(times, 90))})
        slope = (medians[chains[-1]] - medians[chains[0]]) / (chains[-1] - chains[0])
        for r in rows[-len(chains):]:
            r["overhead_slope_us"] = slope
    return rows


def markdown(rows: list[dict], machine: str) -> str:
    lines = ["# Device runtime: control overhead per stage (empty members, batch 1)", "",
             f"- Machine: {machine}", "- `slope` = cost of one more stage (the headline figure).", "",
             "| mode (path that ran) | stages | e2e median (us) | e2e p90 (us) | slope per stage (us) |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} ({r['ran']}) | {r['stages']} | {r['e2e_median_us']:.1f} | {r['e2e_p90_us']:.1f} | "
                     f"{r['overhead_slope_us']:.1f} |")
    return "\n".join(lines + [""])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chains", type=int, nargs=2, default=[2, 8], help="two chain lengths (default 2 8)")
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--cpu-smoke", action="store_true", help="run on the CPU, eagerly, few repeats")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    args = ap.parse_args(argv)
    import torch

    device = "cpu" if args.cpu_smoke else 0
    repeats = 3 if args.cpu_smoke else args.repeats
    machine = "CPU smoke run" if args.cpu_smoke else torch.cuda.get_device_name(0)
    rows = measure(sorted(args.chains), repeats, device)
    text = markdown(rows, machine)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
