"""Benchmark camera pipelines with the example bundle on the CPU (ONNX Runtime, 2 threads).

1. **One live 25 fps source**: an H.264 clip of Fashion-MNIST test images (scaled to SIZE x SIZE)
   played in real time (``clip.mp4#realtime=1``: paced at its 25 fps, latest-frame policy), for
   SECONDS: capture-to-result latency p50/p95 (capture = the wall time the decoded frame reached
   the grabber), drops, processed fps. The same with four such sources at once, batched, with the
   default 30 ms collection window and with none (latency vs batch size).
2. **Throughput, 4 sources**: four clips decoded as fast as possible (every frame), the cascade run
   once per tick on the batch of up to 4 frames vs the same 4 sources with the cascade run one frame
   at a time (batch 1). Runs alternate (batched, one-at-a-time, ...) REPS times so both see the same
   machine load; medians are reported, with ``os.getloadavg()`` before and after each run.

Needs the example bundle (``edge-committee build examples/fashion_mnist/committee.yaml --out
out/fashion_mnist``), the Debian package ``dataset-fashion-mnist`` and PyAV. Usage:

    python benchmarks/bench_stream.py out/fashion_mnist [--seconds 20] [--frames 400] [--reps 3]
        [--size 224] [--threads 2] [--json docs/stream_benchmark.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_committee.data.readers import read_idx
from edge_committee.runtime import Prediction
from edge_committee.stream import StreamPipeline
from edge_committee.stream.sources.test import FASHION_MNIST

FPS = 25


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def write_clip(path: Path, images: np.ndarray, size: int) -> Path:
    """H.264 (libx264, CRF 18) of gray 28x28 ``images`` scaled to size x size, at 25 fps."""
    import av

    factor = size // images.shape[1]
    with av.open(str(path), mode="w") as out:
        s = out.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "veryfast"})
        s.width = s.height = images.shape[1] * factor
        s.pix_fmt = "yuv420p"
        for i, im in enumerate(images):
            rgb = np.repeat(im.repeat(factor, 0).repeat(factor, 1)[..., None], 3, axis=-1)
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, FPS)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


class OneAtATime:
    """The loaded model with every batch split into single frames (the cascade at batch 1)."""

    def __init__(self, model) -> None:
        self.model, self.members, self.labels = model, model.members, model.labels

    def predict(self, images) -> Prediction:
        ps = [self.model.predict(images[i : i + 1]) for i in range(len(images))]
        return Prediction(*(np.concatenate([getattr(p, f) for p in ps])
                            for f in ("labels", "probs", "confidence", "exit_stage", "flags")),
                          ps[0].label_names)


def run(model, sources: list[str], **kw) -> dict:
    before = load()
    pipe = StreamPipeline(model, sources, **kw)
    t0 = time.perf_counter()
    summary = pipe.run()
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    summary["load_before"], summary["load_after"] = before, load()
    return summary


def live(model, clips: list[Path], seconds: float, window_ms: float = 30.0) -> dict:
    s = run(model, [f"{c}#realtime=1" for c in clips], duration=seconds, window_ms=window_ms)
    src = list(s["sources"].values())
    return {"sources": len(clips), "window_ms": window_ms, "seconds": s["elapsed_s"], "load_before": s["load_before"],
            "load_after": s["load_after"], "per_source": src, "stages": s["stages"],
            "processed": sum(x["processed"] for x in src), "captured": sum(x["captured"] for x in src),
            "dropped": sum(x["dropped"] for x in src)}


def throughput(model, clips: list[Path], reps: int) -> dict:
    modes = {"batched": model, "one_at_a_time": OneAtATime(model)}
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(reps):
        for name, m in modes.items():
            s = run(m, [str(c) for c in clips], window_ms=30)
            runs[name].append({"fps": round(s["frames"] / s["wall_s"], 1), "frames": s["frames"],
                               "wall_s": s["wall_s"], "infer_s": s["infer_s"], "batches": s["batches"],
                               "stages": s["stages"], "load_before": s["load_before"],
                               "load_after": s["load_after"]})
    med = {m: statistics.median(r["fps"] for r in rs) for m, rs in runs.items()}
    return {"runs": runs, "median_fps": med, "ratio": round(med["batched"] / med["one_at_a_time"], 2)}


def markdown(res: dict) -> str:
    out = [(f"Machine: {res['machine']}, ONNX Runtime {res['threads']} threads, bundle `{res['bundle']}` "
            f"(cascade {' -> '.join(res['members'])}), frames {res['size']}x{res['size']} H.264. "
            f"Command: `{res['command']}`."), ""]
    out += [("| live 25 fps sources | window (ms) | s | frames processed / captured | dropped | latency p50 (ms) | "
             "latency p95 (ms) | mean batch per stage | load before -> after |"),
            "|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for lv in res["live"]:
        lat50 = "/".join(f"{x['latency_p50_ms']:.1f}" for x in lv["per_source"])
        lat95 = "/".join(f"{x['latency_p95_ms']:.1f}" for x in lv["per_source"])
        fill = " / ".join(f"{st['mean_batch']:.2f}" for st in lv["stages"])
        out.append(f"| {lv['sources']} | {lv['window_ms']:g} | {lv['seconds']:.0f} | {lv['processed']} / "
                   f"{lv['captured']} | {lv['dropped']} | {lat50} | {lat95} | {fill} | "
                   f"{lv['load_before'][0]} -> {lv['load_after'][0]} |")
    tp = res["throughput"]
    out += ["", ("| 4 sources, every frame | run fps | median fps | cascade time (s) | mean batch per stage | "
                 "load (1 min) before -> after |"), "|---|---|---:|---|---|---|"]
    for name, rs in tp["runs"].items():
        # one at a time: the cascade runs at batch 1 whatever the tick holds
        fill = " / ".join(f"{st['mean_batch']:.2f}" for st in rs[0]["stages"]) if name == "batched" else "1 / 1"
        fps = ", ".join(str(r["fps"]) for r in rs)
        infer = ", ".join(f"{r['infer_s']:.2f}" for r in rs)
        loads = ", ".join(f"{r['load_before'][0]}->{r['load_after'][0]}" for r in rs)
        out.append(f"| {name.replace('_', ' ')} | {fps} | {tp['median_fps'][name]:.1f} | {infer} | {fill} | {loads} |")
    out += ["", f"Batched / one at a time: **{tp['ratio']}x** frames per second."]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each live run (default 20)")
    ap.add_argument("--frames", type=int, default=400, help="frames per clip in the throughput runs (default 400)")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions of the throughput runs (default 3)")
    ap.add_argument("--size", type=int, default=224, help="frame size, a multiple of 28 (default 224)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    from edge_committee.api import load as load_bundle

    images = read_idx(FASHION_MNIST)
    n_live = int(args.seconds * FPS) + 2 * FPS
    with tempfile.TemporaryDirectory() as tmp, load_bundle(args.bundle, threads=args.threads) as model:
        tmp = Path(tmp)
        live_clips = [write_clip(tmp / f"live{i}.mp4", images[i * n_live : (i + 1) * n_live], args.size)
                      for i in range(4)]
        clips = [write_clip(tmp / f"clip{i}.mp4", images[5000 + i * args.frames : 5000 + (i + 1) * args.frames],
                            args.size) for i in range(4)]
        model.predict(images[:8])  # warm-up
        res = {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "threads": args.threads,
               "bundle": args.bundle, "members": model.members, "size": args.size,
               "command": "python benchmarks/bench_stream.py " + " ".join(argv or sys.argv[1:])}
        res["live"] = [live(model, live_clips[:1], args.seconds), live(model, live_clips, args.seconds),
                       live(model, live_clips, args.seconds, window_ms=0.0)]
        res["throughput"] = throughput(model, clips, args.reps)
    text = markdown(res)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
