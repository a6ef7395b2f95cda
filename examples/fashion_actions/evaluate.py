"""Measure the fashion-actions clip cascade: top-1 vs MACs per clip, the runtime vs the reference, wall time.

    python examples/fashion_actions/clips.py                       # data/{validation,test}.npz (600 clips each)
    nice -n 5 python examples/fashion_actions/evaluate.py --out results.json
    nice -n 5 python examples/fashion_actions/evaluate.py --time --out results.json
    python examples/fashion_actions/evaluate.py --check-bundle out/fashion_actions
    python examples/fashion_actions/evaluate.py --table results.json      # the README's tables

Each member runs (ONNX Runtime, one thread) on its own view of every clip, as committee.yaml
declares it. The small -> large cascade's thresholds are chosen on the validation split only: the
cheapest whose validation top-1 reaches the large member's, and the one reaching it + 1 point; their
test top-1 and MACs per clip are reported next to a sweep of deferred fractions on test. ``--time``
times, end to end from uint8 clips (views and preprocessing included), the cascade
(:class:`~edge_committee.runtime.clips.ClipHostLoop`) against the plain loop running the large
member alone, one clip per call and 50 clips per call. ``--check-bundle`` compares a built bundle's
``predict`` with the NumPy reference on the whole test split.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from edge_committee.backend.onnxrt import OnnxrtRunner  # noqa: E402
from edge_committee.cascade.clips import ClipView, clip_input, run_clip_cascade  # noqa: E402
from edge_committee.cascade.reference import gate_step, run_cascade  # noqa: E402
from edge_committee.cost import count_macs  # noqa: E402
from edge_committee.runtime.clips import ClipHostLoop  # noqa: E402
from edge_committee.spec.preprocess import Preprocessing  # noqa: E402

CHAIN = ("small", "large")


def members(spec_path: Path = HERE / "committee.yaml") -> dict:
    """name -> (onnx path, view, preprocessing) as the spec declares them."""
    spec = yaml.safe_load(spec_path.read_text())
    return {m["name"]: (spec_path.parent / m["onnx"], ClipView(**m["view"]),
                        Preprocessing.from_dict(m["preprocessing"])) for m in spec["members"]}


def runners(ms: dict, threads: int = 1) -> dict[str, OnnxrtRunner]:
    out = {}
    for name, (path, _, _) in ms.items():
        out[name] = OnnxrtRunner(path, threads=threads, name=name)
        out[name].activate()
    return out


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(HERE / "data" / f"{name}.npz") as z:
        return z["x"][..., None], z["y"]


def logits_of(run, ms, x: np.ndarray) -> dict[str, np.ndarray]:
    return {n: np.concatenate([run[n].infer(clip_input(x[i:i + 50], v, pp)) for i in range(0, len(x), 50)])
            for n, (_, v, pp) in ms.items()}


def max_prob(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).max(1)


def cascade_at(logits: dict, t: float) -> tuple[np.ndarray, np.ndarray]:
    r = run_cascade([logits[n] for n in CHAIN], [t])
    return r.label, r.exit_stage


def accuracy_table(ms: dict, run) -> dict:
    macs = {n: int(count_macs(p, {"clip": (1, pp.channels, v.frames, *pp.size)}).total_macs)
            for n, (p, v, pp) in ms.items()}
    splits = {k: load_split(k) for k in ("validation", "test")}
    logits = {k: logits_of(run, ms, x) for k, (x, _) in splits.items()}
    y = {k: s[1] for k, s in splits.items()}
    top1 = {k: {n: float(np.mean(v.argmax(1) == y[k])) for n, v in lg.items()} for k, lg in logits.items()}
    large = macs["large"]

    def at(k: str, t: float) -> dict:
        label, stage = cascade_at(logits[k], t)
        deferred = float(np.mean(stage == 1))
        return {"threshold": t, "top1": float(np.mean(label == y[k])), "deferred": deferred,
                "macs": macs["small"] + deferred * large, "x_large": (macs["small"] + deferred * large) / large}

    conf = np.unique(max_prob(logits["validation"]["small"]))
    candidates = [0.0, *np.nextafter(conf, np.inf).tolist()]  # exit rule >=: just above each confidence
    val_rows = [at("validation", t) for t in candidates]
    chosen = {}
    for name, plus in (("reach_large", 0.0), ("large_plus_1pt", 0.01)):
        target = top1["validation"]["large"] + plus - 1e-12
        ok = [r for r in val_rows if r["top1"] >= target]
        if not ok:
            chosen[name] = None
            continue
        best = min(ok, key=lambda r: r["macs"])
        chosen[name] = {"validation": best, "test": at("test", best["threshold"])}
    test_conf = max_prob(logits["test"]["small"])
    sweep = []
    for q in np.linspace(0, 1, 11):  # deferred share on test (test quantile thresholds: a description, not a choice)
        t = 0.0 if q == 0 else (np.inf if q >= 1 else float(np.quantile(test_conf, q, method="lower")))
        sweep.append(at("test", t if np.isfinite(t) else 2.0))
    return {"macs": macs, "top1": top1, "chosen": chosen, "test_sweep": sweep,
            "clips": {k: len(v) for k, v in y.items()}}


def wall_time(ms: dict, threshold: float, clips: np.ndarray, batch: int, repeat: int) -> dict:
    """Seconds per clip, one thread, end to end from uint8 clips: the cascade vs the large member alone vs
    the small member alone, interleaved call by call; median and the per-run ratios."""
    run = runners(ms, threads=1)
    views = [ms[n][1] for n in CHAIN]
    pps = [ms[n][2] for n in CHAIN]
    cascade = ClipHostLoop([run[n] for n in CHAIN], views, pps, [threshold], "max_prob", [str(i) for i in range(8)],
                           gate_step)

    def plain(name):
        _, v, pp = ms[name]
        return lambda x: run[name].infer(clip_input(x, v, pp)).argmax(1)

    fns = {"cascade": cascade.run, "large": plain("large"), "small": plain("small")}
    for fn in fns.values():  # warm up
        fn(clips[:batch])
    per_run: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(repeat):
        spent = dict.fromkeys(fns, 0.0)
        for i in range(0, len(clips), batch):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn(clips[i:i + batch])
                spent[name] += time.perf_counter() - t0
        for name in fns:
            per_run[name].append(spent[name] / len(clips) * 1e3)
    ratio = [c / lg for c, lg in zip(per_run["cascade"], per_run["large"])]
    deferred = float(np.mean(cascade.run(clips).exit_stage == 1))
    macs = {n: count_macs(ms[n][0], {"clip": (1, ms[n][2].channels, ms[n][1].frames, *ms[n][2].size)}).total_macs
            for n in CHAIN}
    return {"batch": batch, "clips": len(clips), "repeat": repeat, "ms_per_clip": per_run, "deferred": deferred,
            "macs_over_large": (macs["small"] + deferred * macs["large"]) / macs["large"],
            "median_ms_per_clip": {n: float(np.median(v)) for n, v in per_run.items()},
            "cascade_over_large": {"median": float(np.median(ratio)), "min": min(ratio), "max": max(ratio)}}


def check_bundle(bundle: Path) -> dict:
    """The bundle's predict vs the NumPy reference (ONNX Runtime sessions as plain functions) on the test split."""
    import edge_committee as ec

    x, y = load_split("test")
    with ec.load(bundle, threads=1) as model:
        pred = model.predict(x)
        ms = {n: (bundle / m["file"], ClipView(**m["view"]), Preprocessing.from_dict(m["preprocessing"]))
              for n, m in ((m["name"], m) for m in model.manifest["members"])}
        names, thresholds = model.members, model.thresholds
    run = runners({n: ms[n] for n in names})
    ref = run_clip_cascade(x, [run[n].infer for n in names], [ms[n][1] for n in names], [ms[n][2] for n in names],
                           thresholds)
    return {"clips": len(x), "members": names, "thresholds": thresholds,
            "label_mismatches": int((pred.labels != ref.label).sum()),
            "exit_mismatches": int((pred.exit_stage != ref.exit_stage).sum()),
            "max_abs_prob_diff": float(np.abs(pred.probs - ref.probs).max()),
            "top1": float(np.mean(pred.labels == y)), "deferred": float(np.mean(pred.exit_stage > 0))}


def markdown(result: dict) -> str:
    """The README's tables from a result JSON (``--table``)."""
    a = result["accuracy"]
    macs, top1, large = a["macs"], a["top1"], a["macs"]["large"]
    lines = ["| committee | validation top-1 | test top-1 | test MACs per clip (M) | × large "
             "| clips deferred (test) |", "|---|---:|---:|---:|---:|---:|"]
    for n in CHAIN:
        lines.append(f"| {n} alone | {100 * top1['validation'][n]:.1f} % | {100 * top1['test'][n]:.1f} % | "
                     f"{macs[n] / 1e6:.2f} | {macs[n] / large:.3f} | – |")
    for name, what in (("reach_large", "reaching the large member on validation"),
                       ("large_plus_1pt", "reaching the large member + 1 point on validation")):
        c = a["chosen"].get(name)
        if c is None:
            lines.append(f"| cascade {what} | not reached | | | | |")
            continue
        v, t = c["validation"], c["test"]
        lines.append(f"| cascade {what} (t = {v['threshold']:.3f}) | {100 * v['top1']:.1f} % | "
                     f"{100 * t['top1']:.1f} % | {t['macs'] / 1e6:.2f} | {t['x_large']:.3f} | {100 * t['deferred']:.0f} % |")
    sweep = a["test_sweep"]
    lines += ["", "| clips deferred (test) | " + " | ".join(f"{100 * r['deferred']:.0f} %" for r in sweep) + " |",
              "|---|" + "---:|" * len(sweep),
              "| test top-1 | " + " | ".join(f"{100 * r['top1']:.1f}" for r in sweep) + " |",
              "| × large MACs | " + " | ".join(f"{r['x_large']:.2f}" for r in sweep) + " |"]
    for w in result.get("wall_time", []):
        med = w["median_ms_per_clip"]
        lines.append(f"\nWall time, {w['batch']} clip(s) per call ({w['clips']} test clips, {w['repeat']} runs, "
                     f"medians): cascade {med['cascade']:.2f} ms/clip, large {med['large']:.2f}, "
                     f"small {med['small']:.2f}; "
                     f"cascade / large {w['cascade_over_large']['median']:.2f} (runs "
                     f"{w['cascade_over_large']['min']:.2f}–{w['cascade_over_large']['max']:.2f}) at "
                     f"{w['macs_over_large']:.2f}× the MACs ({100 * w['deferred']:.0f} % deferred).")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--time", action="store_true", help="also time the cascade against the large member")
    ap.add_argument("--time-clips", type=int, default=100, help="test clips timed (default 100)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--check-bundle", type=Path, help="compare a built bundle's predict with the reference")
    ap.add_argument("--table", type=Path, help="print the README's tables from a result JSON and exit")
    args = ap.parse_args()
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return
    result: dict = {"machine": {"platform": platform.platform(), "cpu": _cpu_model(), "cpus": os.cpu_count(),
                                "load_before": os.getloadavg()}, "command": " ".join(sys.argv)}
    if args.check_bundle:
        result["check_bundle"] = check_bundle(args.check_bundle)
        print(json.dumps(result["check_bundle"], indent=2))
    else:
        ms = members()
        result["accuracy"] = table = accuracy_table(ms, runners(ms))
        print(json.dumps({k: table[k] for k in ("macs", "top1", "chosen")}, indent=2))
        if args.time and table["chosen"]["reach_large"]:
            t = table["chosen"]["reach_large"]["validation"]["threshold"]
            x = load_split("test")[0][:args.time_clips]
            result["wall_time"] = [wall_time(ms, t, x, b, args.repeat) for b in (1, 50)]
            for w in result["wall_time"]:
                print(json.dumps({k: w[k] for k in ("batch", "median_ms_per_clip", "cascade_over_large", "deferred",
                                                   "macs_over_large")}))
    result["machine"]["load_after"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
