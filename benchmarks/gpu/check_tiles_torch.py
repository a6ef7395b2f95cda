"""GPU check of the segmentation tile cascade's torch path (issue 23), prepared but NOT yet run on a GPU.

On the GPU machine (the device tool), from the repository root, with the fashion-streets bundle and its
test split carried (git-ignored):

    python examples/fashion_streets/scenes.py --out .carry/issue23           # on the CPU machine
    python -m edge_committee build examples/fashion_streets/committee.yaml --out .carry/issue23/bundle
    # device call: command "PYTHONPATH=. python benchmarks/gpu/check_tiles_torch.py .carry/issue23/bundle
    #   .carry/issue23/test.npz --out $OUT/tiles_torch.json", carry [".carry/issue23"] plus onnx2torch
    #   as in benchmarks/gpu/prepare_device_carry.sh, timeout_s 300

Compares ``backend="torch-cuda"`` (CUDA) with the ONNX Runtime host loop (CPU) on every test frame
(pixel labels and tile exits; tiles whose confidence lies within 1e-5 of the threshold are counted
apart), then times, at batch 1 with CUDA synchronisation, the cascade against the large member alone
on whole frames (both torch, same device), warm-up 10, 50 timed frames, median and p90.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("test", type=Path, help="npz with x: (N, H, W) uint8 frames")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    import edge_committee as ec
    from edge_committee.backend.torch_cuda.loader import ModuleFromOnnx

    x = np.load(args.test)["x"]
    report: dict = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
                    "torch": torch.__version__, "frames": len(x)}
    with ec.load(args.bundle, threads=1) as cpu, ec.load(args.bundle, backend="torch-cuda", device=args.device) as dev:
        t = cpu.thresholds[0] if cpu.thresholds else float("inf")
        diff = {"pixels": 0, "tile_exits": 0, "tiles_near_threshold": 0}
        for i in range(0, len(x), 10):
            a, b = cpu.predict(x[i:i + 10]), dev.predict(x[i:i + 10])
            diff["pixels"] += int((a.labels != b.labels).sum())
            diff["tile_exits"] += int((a.tile_exit_stage != b.tile_exit_stage).sum())
            diff["tiles_near_threshold"] += int((np.abs(a.tile_confidence - t) < 1e-5).sum())
        report["mismatches_vs_onnxruntime"] = diff
        large = ModuleFromOnnx(dev.root / dev.executor.paths[-1])().to(args.device)
        pp = dev.preprocessing[-1]

        def whole_frame(frame):
            with torch.no_grad():
                inp = torch.from_numpy(pp(frame[..., None])).to(args.device)
                out = torch.nn.functional.interpolate(large(inp), size=inp.shape[-2:], mode="bilinear",
                                                      align_corners=False)
                return out.argmax(dim=1).cpu()

        for name, fn in (("cascade", dev.predict), ("large_whole_frame", whole_frame)):
            times = []
            for j in range(60):
                torch.cuda.synchronize() if args.device.startswith("cuda") else None
                t0 = time.perf_counter()
                fn(x[j % len(x)][None])
                torch.cuda.synchronize() if args.device.startswith("cuda") else None
                if j >= 10:
                    times.append((time.perf_counter() - t0) * 1e3)
            report[f"{name}_ms"] = {"median": float(np.median(times)), "p90": float(np.percentile(times, 90))}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
