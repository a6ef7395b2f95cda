"""Benchmark of committee selection: the full frontier for 8 members x 10,000 validation samples,
cascades and ensembles of up to 4 members (the target: at most 10 s on 2 CPU cores), and zoo
scale (issue 19): a search mode against the exhaustive search, side by side.

Synthetic member outputs (:mod:`edge_committee.select.synthetic`: members of increasing accuracy,
correlated errors, EfficientNet-B0..B7-like MACs; ``--zoo families``: several families of
different efficiency, many dominated members). Measures like trtexec: one warm-up run, then
``--repeats`` timed runs; prints median / p90 / min per phase and a JSON line.

    python benchmarks/bench_select.py                       # defaults: 8 x 10,000 x L=4, 10 classes
    python benchmarks/bench_select.py --write docs/selection_benchmark.md
    # zoo scale: --search (default auto) and exhaustive, each in its own process (time, peak RSS),
    # then the accuracy gap of the first to exhaustive; exhaustive is stopped after --timeout s
    python benchmarks/bench_select.py --compare --members 16 --val 50000 --max-len 4 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from edge_committee.select import choose, frontier, write_report
from edge_committee.select.guided import frontier_gap
from edge_committee.select.synthetic import load_on_disk, synthetic_data, synthetic_zoo


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _stats(times: list[float]) -> dict[str, float]:
    t = np.asarray(times)
    return {"median_s": float(np.median(t)), "p90_s": float(np.percentile(t, 90)), "min_s": float(t.min())}


def run(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()[0]
    data = _data(args, args.seed)
    phases: dict[str, list[float]] = {"frontier": [], "select+test": [], "report": []}
    front = None
    for rep in range(args.repeats + 1):
        t0 = time.perf_counter()
        front = frontier(data, max_len=args.max_len, order=args.order, stage_overhead=args.overhead,
                         search=args.search, delta=args.delta)
        t1 = time.perf_counter()
        chosen, _ = choose(front, "accuracy", "best_single")
        front.evaluate([chosen])
        t2 = time.perf_counter()
        if args.report:
            from edge_committee.select import SelectionResult

            (ev,) = front.evaluate([chosen])
            with tempfile.TemporaryDirectory() as tmp:
                write_report(SelectionResult(ev, front, "accuracy", "best_single"), tmp)
        t3 = time.perf_counter()
        if rep == 0:
            continue  # warm-up
        phases["frontier"].append(t1 - t0)
        phases["select+test"].append(t2 - t1)
        phases["report"].append(t3 - t2)
    assert front is not None
    lengths = sorted({len(f.members) for f in front.cascades})
    return {
        "members": args.members,
        "num_val": args.val,
        "num_classes": args.classes,
        "max_len": args.max_len,
        "order": args.order,
        "cascades": len(front.cascades),
        "ensembles": len(front.ensembles),
        "front_points": int(sum(f.accuracy.size for f in front.cascades)),
        "eps_accuracy_by_length": {
            k: max(f.eps_accuracy for f in front.cascades if len(f.members) == k) for k in lengths
        },
        "repeats": args.repeats,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "phases": {k: _stats(v) for k, v in phases.items() if args.report or k != "report"},
        "cpu": _cpu_model(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def _markdown(res: dict, command: str) -> str:
    ph = res["phases"]
    rows = "\n".join(
        f"| {k} | {v['median_s']:.2f} | {v['p90_s']:.2f} | {v['min_s']:.2f} |" for k, v in ph.items()
    )
    eps = ", ".join(f"K={k}: {100 * v:.2f}%" for k, v in res["eps_accuracy_by_length"].items())
    return f"""# Selection benchmark

Full frontier (every single member, every ensemble and every cheapest-first cascade of 2 to
{res['max_len']} members with its Pareto set over thresholds) for {res['members']} synthetic members x
{res['num_val']:,} validation samples x {res['num_classes']} classes: {res['cascades']} cascades,
{res['ensembles']} ensembles, {res['front_points']:,} per-sequence Pareto points.
Target: at most 10 s on 2 CPU cores.

Machine: {res['cpu']}, {res['cpus_available']} cores available (shared with other jobs while
measured; 1-minute load average {res['load_average_1min'][0]} before, {res['load_average_1min'][1]} after),
Python {res['python']}, NumPy {res['numpy']}. One warm-up run, then {res['repeats']} timed runs.

Command: `{command}`

| phase | median (s) | p90 (s) | min (s) |
|---|---:|---:|---:|
{rows}

- `frontier`: stage statistics of every prefix, the threshold search of every cascade, singles
  and ensembles (`edge_committee.select.frontier`).
- `select+test`: the objective (cheapest with accuracy >= best single) and test-split figures.
- `report`: PNG + Markdown + JSON (`write_report`).

Search bound (largest over sequences; accuracy the search may miss at no higher mean cost,
0 = exact): {eps}.
"""


def _section(res: dict, command: str) -> str:
    f = res["phases"]["frontier"]
    return (
        f"## {res['members']} members x {res['num_val']:,} x {res['num_classes']} classes, "
        f"L = {res['max_len']}, order {res['order']}\n\n"
        f"`{command}`: {res['cascades']} cascades, frontier median {f['median_s']:.2f} s "
        f"(p90 {f['p90_s']:.2f} s, min {f['min_s']:.2f} s, {res['repeats']} runs after a warm-up; "
        f"load average {res['load_average_1min'][0]} before, {res['load_average_1min'][1]} after).\n"
    )


def _data(args: argparse.Namespace, seed: int):
    if getattr(args, "data_dir", None):
        return load_on_disk(args.data_dir)
    make = synthetic_zoo if args.zoo == "families" else synthetic_data
    return make(args.members, args.val, args.test, args.classes, seed=seed)


def _on_disk(args: argparse.Namespace) -> bool:
    """Zoos whose logits exceed 1 GiB are written to disk once per seed (in a separate process) and
    memory-mapped by each search, so neither holds them in memory."""
    return args.zoo == "synthetic" and 4 * args.members * args.val * args.classes > (1 << 30)


def make_data(args: argparse.Namespace) -> int:
    synthetic_data(args.members, args.val, args.test, args.classes, seed=args.seed, out_dir=args.make_data)
    return 0


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cpu_s() -> float:
    """CPU seconds (user + system, every thread) this process has used."""
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def worker(args: argparse.Namespace) -> int:
    """One frontier in this process: time, peak RSS, search info; the candidate table to --out."""
    t_data = time.perf_counter()
    data = _data(args, args.seed)
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    front = frontier(data, max_len=args.max_len, search=args.search, delta=args.delta)
    t1 = time.perf_counter()
    cpu1 = _cpu_s()
    chosen, _ = choose(front, "worst_cost", front.data.costs[front.reference_member])
    front.evaluate([chosen])
    t2 = time.perf_counter()
    table = front.table()
    np.savez(args.out, accuracy=table["accuracy"], mean=table["mean"], worst=table["worst"])
    info = front.search.to_dict(timing=True)
    print(json.dumps({"frontier_s": t1 - t0, "one_selection_s": t2 - t0, "peak_rss_mib": _peak_rss_mib(),
                      "cpu_s": cpu1 - cpu0, "data_s": t0 - t_data,
                      "search": info, "eps_max": front.eps_accuracy, "points": int(table["accuracy"].size)}))
    return 0


def _child(args: argparse.Namespace, search: str, seed: int, out: str, data_dir: str | None = None,
           timeout: float | None = None) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--search", search, "--seed", str(seed),
           "--out", out, "--members", str(args.members), "--val", str(args.val), "--test", str(args.test),
           "--classes", str(args.classes), "--max-len", str(args.max_len), "--zoo", args.zoo]
    if args.delta is not None:
        cmd += ["--delta", str(args.delta)]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or args.timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> list[dict]:
    """--search against exhaustive, per seed, each in its own process."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            load = os.getloadavg()[0]
            a_path, e_path = os.path.join(tmp, f"a{seed}.npz"), os.path.join(tmp, f"e{seed}.npz")
            data_dir = None
            if _on_disk(args):
                data_dir = os.path.join(tmp, f"zoo{seed}")
                subprocess.run([sys.executable, os.path.abspath(__file__), "--make-data", data_dir, "--seed",
                                str(seed), "--members", str(args.members), "--val", str(args.val), "--test",
                                str(args.test), "--classes", str(args.classes)], check=True)
            a = _child(args, args.search, seed, a_path, data_dir)
            e = (_child(args, "exhaustive", seed, e_path, data_dir, args.exhaustive_timeout)
                 if not args.skip_exhaustive else None)
            if data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
            row = {"seed": seed, "zoo": args.zoo, "members": args.members, "num_val": args.val,
                   "classes": args.classes, "max_len": args.max_len, "search": a, "exhaustive": e,
                   "load_average_1min": [round(load, 2), round(os.getloadavg()[0], 2)], "gap": None}
            if a is not None and e is not None:
                row["gap"] = frontier_gap(dict(np.load(e_path)), dict(np.load(a_path)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _compare_markdown(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = [f"### {args.members} members x {args.val:,} x {args.classes} classes, L = {args.max_len}, "
             f"zoo `{args.zoo}`, search `{args.search}` vs exhaustive", "",
             f"`{command}` on {_cpu_model()}, {len(os.sched_getaffinity(0))} cores shared with other "
             "engineers' jobs (1-min load average before/after each seed in the last column).", "",
             "| seed | search: scored / all (by length) | search s (CPU s) | search RSS MiB | outputs | exhaustive s (CPU s) "
             "| exhaustive RSS MiB | speed-up | max gap, mean budgets (pts) | max gap, worst budgets (pts) "
             "| cost excess, targets | load |",
             "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        a, e, g = r["search"], r["exhaustive"], r["gap"]
        if a is None:
            lines.append(f"| {r['seed']} | did not finish in {args.timeout} s | | | | | | | | | | {r['load_average_1min']} |")
            continue
        info = a["search"]
        limit = args.exhaustive_timeout or args.timeout
        es = f"{e['frontier_s']:.1f} ({e.get('cpu_s', float('nan')):.0f})" if e else f"> {limit:.0f} (stopped)" if not args.skip_exhaustive else "not run"
        held = info.get("outputs") or {"form": "full"}
        held_s = (f"compact k={held['k']}, {held['fallback_samples']:,} in full" if held["form"] == "compact"
                  else "full")
        by_len = " / ".join(f"{v:,}" for _, v in sorted(info["scored_by_length"].items(), key=lambda kv: int(kv[0])))
        erss = f"{e['peak_rss_mib']:.0f}" if e else "-"
        ratio = f"{e['frontier_s'] / a['frontier_s']:.1f}x" if e else "-"
        gaps = (f"{g['mean_budget_gap']:.3f} | {g['worst_budget_gap']:.3f} | {g['target_cost_excess_pct']:.2f}%"
                if g else "- | - | -")
        lines.append(f"| {r['seed']} | {info['sequences_scored']:,} / {info['sequences_total']:,} ({by_len}) | "
                     f"{a['frontier_s']:.1f} ({a.get('cpu_s', float('nan')):.0f}) | {a['peak_rss_mib']:.0f} | {held_s} | "
                     f"{es} | {erss} | {ratio} | {gaps} | "
                     f"{', '.join(str(x) for x in r['load_average_1min'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--val", type=int, default=10_000, help="validation samples")
    p.add_argument("--test", type=int, default=1_000, help="test samples")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--max-len", type=int, default=4)
    p.add_argument("--order", default="cheapest_first", choices=["cheapest_first", "any"])
    p.add_argument("--overhead", type=float, default=0.0, help="stage overhead (MACs)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the report phase")
    p.add_argument("--write", metavar="MD", help="write the results as Markdown to this file")
    p.add_argument("--append", action="store_true", help="with --write: add a short section instead")
    p.add_argument("--search", default="auto", choices=["auto", "exhaustive", "guided"])
    p.add_argument("--delta", type=float, help="guided search window (accuracy fraction, default 0.002)")
    p.add_argument("--zoo", default="synthetic", choices=["synthetic", "families"],
                   help="synthetic: monotone family; families: several families, many dominated members")
    p.add_argument("--compare", action="store_true", help="--search vs exhaustive, each in its own process")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="with --compare: data seeds")
    p.add_argument("--timeout", type=float, default=600.0, help="with --compare: stop a search after this (s)")
    p.add_argument("--skip-exhaustive", action="store_true", help="with --compare: time --search only")
    p.add_argument("--exhaustive-timeout", type=float, help="with --compare: stop exhaustive after this (s; default --timeout)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    p.add_argument("--make-data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.make_data:
        return make_data(args)
    if args.worker:
        return worker(args)
    command = "python benchmarks/bench_select.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.compare:
        rows = compare(args)
        if args.write:
            old = ""
            if os.path.exists(args.write):
                with open(args.write, encoding="utf-8") as f:
                    old = f.read().rstrip("\n") + "\n\n"
            with open(args.write + ".tmp", "w", encoding="utf-8") as f:
                f.write(old + _compare_markdown(rows, args, command.replace(" --write " + args.write, "")))
            os.replace(args.write + ".tmp", args.write)
        return 0
    res = run(args)
    if args.write:
        old = ""
        if args.append and os.path.exists(args.write):
            with open(args.write, encoding="utf-8") as f:
                old = f.read().rstrip("\n") + "\n\n"
        text = _section(res, command.strip()) if old else _markdown(res, command.strip())
        tmp = args.write + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(old + text)
        os.replace(tmp, args.write)
    for k, v in res["phases"].items():
        print(f"{k:12s} median {v['median_s']:.3f} s  p90 {v['p90_s']:.3f} s  min {v['min_s']:.3f} s")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
