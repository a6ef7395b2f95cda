#!/usr/bin/env python
"""Latency on this device: profile a bundle, check the cost model, bench cascades under budgets.

Usage::

    python benchmarks/bench_cascade.py out/fashion_mnist --threads 1

On a copy of the bundle (the original is not changed), in one process:

1. ``profile`` at batch 1, 8 and 64 (the wall time of profiling is one of the targets: < 60 s);
2. ``bench`` of the bundle's chosen cascade next to its largest and most accurate members at
   ``--batch`` (default 1 and 64) on the test split: speed-up over the largest member, and the
   cost model's predicted mean latency against the measured one;
3. the cost model's error side by side: ``--rounds`` times, profile the benched members (batch
   1, 8, 64) and at once bench them on ``--round-limit`` images; the error per round is
   (predicted - measured) / measured mean latency, and the median over rounds is quoted, so a
   burst of load from other processes during one profile or one bench does not decide the figure;
4. for each batch size b: ``select --budget-ms X_b --budget-kind worst --batch b`` with X_b the
   cost model's worst-case latency of the largest member alone (a cascade as fast as the largest
   member at worst), then ``bench`` at b: the chosen cascade's measured p90 must stay <= X_b.

Writes ``--out`` .md and .json (machine, load averages, command, every figure).

``--clock thread`` times with the calling thread's CPU time instead of the wall clock (a
diagnostic for a shared machine: it leaves out the time other processes take from this one; with
``--threads 1`` ONNX Runtime runs in the calling thread, so nothing else is left out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: environment variables that set thread pools other than ONNX Runtime's (recorded in the command)
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: its choice)")
    p.add_argument("--batch", default="1,64", help="batch sizes to bench (default 1,64)")
    p.add_argument("--limit", type=int, default=None, help="test images for the main bench (default all)")
    p.add_argument("--budget-limit", type=int, default=3000, help="test images per budget check (default 3000)")
    p.add_argument("--rounds", type=int, default=5, help="profile-then-bench rounds for the model error (default 5)")
    p.add_argument("--round-limit", type=int, default=1280, help="test images per round (default 1280)")
    p.add_argument("--clock", choices=("wall", "thread"), default="wall",
                   help="wall time (default) or the calling thread's CPU time (see the module docstring)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "latency_benchmark",
                   help="output path without suffix (.md, .json, .png)")
    return p.parse_args(argv)


def largest_member(manifest: dict) -> str:
    return max(manifest["members"], key=lambda m: (m["macs"], m["precision"] == "fp32"))["name"]


def profile_step(work: Path, threads: int | None) -> tuple[dict, float, list[float]]:
    from edge_committee.profile import profile_bundle, write_profile

    load = list(os.getloadavg())
    start = time.perf_counter()
    doc = profile_bundle(work, "onnxrt", (1, 8, 64), threads, show_progress=False)
    seconds = time.perf_counter() - start
    write_profile(work, doc)
    print(f"profiled in {seconds:.1f} s (load {load[0]:.2f})", flush=True)
    return doc, seconds, load


def bench_step(work: Path, split, batches: list[int], threads: int | None, limit: int | None, profile: dict):
    from edge_committee.profile.bench import bench_bundle

    doc = bench_bundle(work, split.images, split.labels, batches, "onnxrt", threads, limit=limit, profile=profile,
                       show_progress=False)
    for r in doc["results"]:
        pred = (r.get("predicted") or {}).get("mean_ms")
        print(f"  b{r['batch']:<3} {r['role']:<24} p50 {r['p50_ms']:8.3f}  p90 {r['p90_ms']:8.3f}  mean "
              f"{r['mean_ms']:8.3f}  predicted {pred if pred is None else round(pred, 3)}  acc {r.get('accuracy')}",
              flush=True)
    return doc


def error_rounds(work: Path, split, batches: list[int], threads: int | None, rounds: int, limit: int) -> list[dict]:
    """Profile the benched members, then bench at once; ``rounds`` times (see the module docstring)."""
    from edge_committee.bundle import read_manifest
    from edge_committee.profile import profile_bundle
    from edge_committee.profile.bench import bench_bundle, contenders

    members = sorted({m for c in contenders(read_manifest(work)) for m in c.members})
    rows = []
    for r in range(rounds):
        prof = profile_bundle(work, "onnxrt", sorted({1, 8, 64, *batches}), threads, members=members,
                              show_progress=False)
        doc = bench_bundle(work, split.images, split.labels, batches, "onnxrt", threads, limit=limit,
                           profile=prof, show_progress=False)
        for row in doc["results"]:
            pred, pred_medians = row["predicted"]["mean_ms"], row["predicted"]["mean_ms_median_timings"]
            rows.append({"round": r, "batch": row["batch"], "role": row["role"], "measured_mean_ms": row["mean_ms"],
                         "predicted_mean_ms": pred, "error": (pred - row["mean_ms"]) / row["mean_ms"],
                         "predicted_from_medians_ms": pred_medians,
                         "error_from_medians": (pred_medians - row["mean_ms"]) / row["mean_ms"],
                         "load_avg": doc["load_avg"]})
        print(f"round {r}: " + ", ".join(f"b{x['batch']} {x['role']} {100 * x['error']:+.1f}%" for x in rows[-len(doc['results']):]),
              flush=True)
    return rows


def error_summary(rows: list[dict]) -> list[dict]:
    """Per (batch, role): the median error over rounds and its range."""
    import numpy as np

    out = []
    for key in sorted({(r["batch"], r["role"]) for r in rows}):
        errs = np.array([r["error"] for r in rows if (r["batch"], r["role"]) == key])
        from_medians = np.array([r["error_from_medians"] for r in rows if (r["batch"], r["role"]) == key])
        out.append({"batch": key[0], "role": key[1], "median_error": float(np.median(errs)),
                    "min_error": float(errs.min()), "max_error": float(errs.max()), "rounds": int(errs.size),
                    "median_error_from_medians": float(np.median(from_medians))})
    return out


def budget_checks(work: Path, split, batches: list[int], threads: int | None, limit: int, profile_doc: dict):
    from edge_committee.bundle import read_manifest
    from edge_committee.pipeline import reselect
    from edge_committee.profile import STAT_FOR_KIND, LatencyModel

    worst_model = LatencyModel.from_profile(profile_doc, STAT_FOR_KIND["worst"])
    rows = []
    for b in batches:
        largest = largest_member(read_manifest(work))
        budget = worst_model.worst([largest], b)
        manifest = reselect(work, "worst_cost", budget, latency=True, batch=b, threads=threads)
        c = manifest["cascade"]
        print(f"budget {budget} ms worst at batch {b}: {' > '.join(c['members'])} "
              f"(predicted worst {c['worst_cost']:.3f} ms)", flush=True)
        doc = bench_step(work, split, [b], threads, limit, profile_doc)
        row = next(r for r in doc["results"] if r["role"] == "cascade")
        rows.append({"batch": b, "budget_ms": budget, "budget_from": f"{largest} alone, worst case (p90 model)",
                     "members": c["members"], "thresholds": c["thresholds"][: len(c["members"]) - 1],
                     "predicted_worst_ms": c["worst_cost"], "predicted_mean_ms": c["mean_cost"],
                     "measured": {k: row[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "accuracy")},
                     "met": row["p90_ms"] <= budget, "load_avg": doc["load_avg"]})
    return rows


def machine(threads: int | None) -> dict:
    import onnxruntime

    from edge_committee.profile.fingerprint import cpu_model, usable_cores

    return {"cpu": cpu_model(), "cores": usable_cores(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "threads": threads or "onnxruntime default"}


def markdown(res: dict) -> str:
    from edge_committee.profile.report import bench_markdown

    m = res["machine"]
    lines = [
        "# Latency benchmark: profile, cost model and bench (ONNX Runtime, CPU)",
        "",
        (f"Machine: {m['cpu']}, {m['cores']} cores (shared with other engineers' jobs), onnxruntime "
        f"{m['onnxruntime']}, threads: {m['threads']}; clock: {res['clock']}.  "),
        f"Command: `{res['command']}`  ",
        f"Date: {res['date']}. Load average (1/5/15 min) at the start: "
        + ", ".join(f"{x:.2f}" for x in res["load_start"]) + ".",
        "",
        "## Profiling time",
        "",
        (f"`edge-committee profile` at batch 1, 8 and 64 ({res['profile']['members']} member variants): "
        f"**{res['profile']['seconds']:.1f} s** (target < 60 s); "
        f"load average {res['profile']['load'][0]:.2f} when it started."),
        "",
        "## The chosen cascade vs its largest member, and the cost model",
        "",
        bench_markdown(res["bench"]).split("\n", 2)[2].replace(
            "Latency: wall time of one", "Latency: wall time of one" if res["clock"] == "wall time"
            else "Latency: CPU time of the calling thread for one"),
        "## Cost model error, side by side",
        "",
        (f"{len({r['round'] for r in res['error_rounds']})} rounds of: profile the benched members (batch 1, 8, "
        f"64), then bench them at once on the first {res['round_limit']} test images. Error = (predicted - "
        "measured) / measured mean latency per call; the median over rounds, and the range."),
        "",
        ("| batch | contender | median error % | range % | median error %, median timings | load average "
        "during the rounds |"),
        "|---:|---|---:|---|---:|---|",
        *[f"| {e['batch']} | {e['role']} | {100 * e['median_error']:+.1f} | {100 * e['min_error']:+.1f} .. "
          f"{100 * e['max_error']:+.1f} | {100 * e['median_error_from_medians']:+.1f} | " + ", ".join(f"{r['load_avg'][0]:.1f}" for r in res["error_rounds"]
                                                         if (r["batch"], r["role"]) == (e["batch"], e["role"])) + " |"
          for e in res["errors"]],
        "",
        "## Worst-case latency budgets",
        "",
        ("Budget X_b = the cost model's worst-case latency of the largest member alone at batch b (p90 "
        "timings); `select --budget-ms X_b --budget-kind worst --batch b`, then `bench` at b on "
        f"{res['budget_limit']} test images."),
        "",
        "| batch | budget ms | chosen | predicted worst ms | measured p50 | p90 | p99 | test acc % | met (p90 <= budget) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["budgets"]:
        me = r["measured"]
        lines.append(f"| {r['batch']} | {r['budget_ms']:.3f} | {' > '.join(r['members'])} | "
                     f"{r['predicted_worst_ms']:.3f} | {me['p50_ms']:.3f} | {me['p90_ms']:.3f} | {me['p99_ms']:.3f} | "
                     f"{100 * me['accuracy']:.2f} | {'yes' if r['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.clock == "thread":
        if "edge_committee.profile" in sys.modules:
            raise SystemExit("--clock thread must be chosen before edge_committee.profile is imported")
        time.perf_counter = time.thread_time  # every timer of the SDK reads time.perf_counter
    from edge_committee.bundle import read_manifest
    from edge_committee.cli.bench import read_source
    from edge_committee.profile import STAT_FOR_KIND, LatencyModel
    from edge_committee.profile.profiler import parse_batches
    from edge_committee.profile.report import frontier_points, write_bench

    batches = parse_batches(args.batch)
    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="ec-latency-") as tmp:
        work = Path(tmp) / "bundle"
        shutil.copytree(args.bundle, work)
        manifest = read_manifest(work)
        split = read_source(None, manifest)
        prof, seconds, load = profile_step(work, args.threads)
        model = LatencyModel.from_profile(prof, STAT_FOR_KIND["mean"])
        bench = bench_step(work, split, batches, args.threads, args.limit, prof)
        curves = {b: frontier_points(work, manifest, model, b) for b in batches}
        rounds = error_rounds(work, split, batches, args.threads, args.rounds, args.round_limit)
        budgets = budget_checks(work, split, batches, args.threads, args.budget_limit, prof)
    bench["bundle"] = str(args.bundle)
    res = {
        "command": "".join(f"{k}={os.environ[k]} " for k in _THREAD_VARS if k in os.environ) + "python "
        + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO), *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(args.threads), "load_start": load_start, "load_end": list(os.getloadavg()),
        "budget_limit": args.budget_limit, "clock": "wall time" if args.clock == "wall" else
        "CPU time of the calling thread (leaves out the time other processes take)",
        "profile": {"seconds": seconds, "load": load, "name": prof["name"], "members": len(prof["members"]),
                    "doc": prof},
        "bench": bench, "budgets": budgets, "error_rounds": rounds, "errors": error_summary(rounds),
        "round_limit": args.round_limit,
    }
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bench(bench, out.parent, curves, stem=out.name)  # .png (and a .md/.json the lines below replace)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(res) + f"\n![latency vs accuracy]({out.name}.png)\n")
    print(f"wrote {out}.md, .json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
