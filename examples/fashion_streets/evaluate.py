"""Measure the fashion-streets tile cascade: mIoU vs MACs per frame, per tile geometry, and wall time.

    python examples/fashion_streets/scenes.py                  # data/{validation,test}.npz (100 frames each)
    nice -n 5 python examples/fashion_streets/evaluate.py --out results.json

For each geometry (tile, margin): the small member on whole frames, the large member on whole
frames and on every tile window ("large tiled", the tile cascade's fair reference), and the
small -> large tile cascade. Thresholds are chosen on the validation split only (the cheapest
cascade whose validation mIoU reaches the large member's tiled validation mIoU, and 99 % of it);
their test mIoU and MACs are reported next to a sweep of deferred-tile fractions on test.
``--time`` also times, on one thread with ONNX Runtime, the cascade (TileHostLoop) against the
large member run on every tile window and on the whole frame, end to end (preprocessing included).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from edge_committee.backend.onnxrt import OnnxrtRunner  # noqa: E402
from edge_committee.cascade.tiles import TileGrid, argmax_classes, miou_from_confusion, resize_logits  # noqa: E402
from edge_committee.cost import count_macs  # noqa: E402
from edge_committee.evaluate.dense import split_stats  # noqa: E402
from edge_committee.runtime.tiles import TileHostLoop  # noqa: E402
from edge_committee.select import dense as D  # noqa: E402
from edge_committee.spec.preprocess import Preprocessing  # noqa: E402

PP = Preprocessing.from_dict({"size": [192, 384], "color": "gray", "mean": [0.45], "std": [0.25]})
LABELS = [str(i) for i in range(11)]
CHAIN = ("small", "large")


def runners(members: Path, threads: int = 1) -> dict[str, OnnxrtRunner]:
    out = {}
    for name in CHAIN:
        r = OnnxrtRunner(members / f"{name}.onnx", threads=threads, name=name)
        r.output_rank = 4
        r.activate()
        out[name] = r
    return out


def costs_for(members: Path, grid: TileGrid) -> D.DenseCosts:
    frame = {n: int(count_macs(members / f"{n}.onnx", {"image": (1, 1, 192, 384)}).total_macs) for n in CHAIN}
    window = {n: int(count_macs(members / f"{n}.onnx", {"image": (1, 1, *grid.window)}).total_macs) for n in CHAIN}
    return D.DenseCosts(frame, window)


def geometry(run, splits, members: Path, tile: int, margin: int) -> dict:
    grid = TileGrid((tile, tile), margin)
    costs = costs_for(members, grid)
    stats = {k: split_stats({n: (run[n].infer, PP) for n in CHAIN}, x, y, grid, 11, [CHAIN])
             for k, (x, y) in splits.items()}
    val, test = stats["validation"], stats["test"]
    large_tiled = {k: D.tiled_reference(s, "large", costs) for k, s in stats.items()}
    front = D.sequence_front(val, CHAIN, costs)
    row = {"tile": tile, "margin": margin, "tiles_per_frame": val.tiles_per_frame, "macs_frame": costs.frame,
           "macs_window": costs.window, "large_tiled_macs": large_tiled["test"]["macs_per_frame"]}
    for k, s in stats.items():
        row[k] = {"small": miou_from_confusion(s.full_cm("small")), "large": miou_from_confusion(s.full_cm("large")),
                  "large_tiled": large_tiled[k]["miou"]}
    ref_macs = large_tiled["test"]["macs_per_frame"]
    for name, frac in (("reach_large_tiled", 1.0), ("reach_99pct", 0.99)):
        target = frac * large_tiled["validation"]["miou"]
        ok = np.flatnonzero(front.accuracy >= target)
        if not ok.size:
            row[name] = None
            continue
        i = ok[np.argmin(front.mean_cost[ok])]
        thr = front.thresholds[i]
        stage = D.exit_stages(test, CHAIN, thr[None])
        acc, macs = D.score(test, CHAIN, stage, costs)
        row[name] = {"threshold": float(thr[0]), "val_miou": float(front.accuracy[i]), "test_miou": float(acc[0]),
                     "test_deferred": float((stage[0] == 1).mean()), "test_macs": float(macs[0]),
                     "x_large_tiled": float(macs[0] / ref_macs), "x_large_frame": float(macs[0] / costs.frame["large"]),
                     "test_reaches": bool(acc[0] >= frac * large_tiled["test"]["miou"])}
    conf = test.prefixes[("small",)].conf
    sweep = []
    for q in np.linspace(0, 1, 11):  # deferred fraction on test (quantile thresholds on test: a description, not a choice)
        t = np.inf if q >= 1 else float(np.quantile(conf, q, method="lower"))
        stage = D.exit_stages(test, CHAIN, np.array([[t if q > 0 else -np.inf]]))
        acc, macs = D.score(test, CHAIN, stage, costs)
        sweep.append({"deferred": float((stage[0] == 1).mean()), "test_miou": float(acc[0]), "test_macs": float(macs[0]),
                      "x_large_tiled": float(macs[0] / ref_macs)})
    row["test_sweep"] = sweep
    return row


def wall_time(members: Path, frames: np.ndarray, tile: int, margin: int, threshold: float, repeat: int = 3) -> dict:
    """Median seconds per frame over ``repeat`` x frames calls, one thread: cascade vs large tiled vs large whole
    frame vs small, interleaved call by call."""
    grid = TileGrid((tile, tile), margin)
    r = runners(members, threads=1)
    cascade = TileHostLoop([r["small"], r["large"]], [PP, PP], grid, [threshold], "mean_max_prob", LABELS)
    frame = (192, 384)

    # the plain loops a user would write (the same resize and class argmax as the cascade's)
    def large_tiled(x):  # every window, argmax, paste back
        pre = PP(x[..., None])
        out = r["large"].infer(grid.windows(pre, np.arange(len(x) * grid.count(frame))))
        return grid.merge(argmax_classes(grid.centre(resize_logits(out, grid.window)))[:, None], frame)

    def plain(name):
        return lambda x: argmax_classes(resize_logits(r[name].infer(PP(x[..., None])), frame))

    fns = {"cascade": cascade.run, "large_tiled": large_tiled, "large_frame": plain("large"),
           "small_frame": plain("small")}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):  # interleaved, frame by frame, so load changes hit every variant alike
        for i in range(len(frames)):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn(frames[i:i + 1])
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(v)) for name, v in times.items()}


def check_bundle(bundle: Path, frames: np.ndarray, members: Path, batch: int = 10, fused: Path | None = None) -> dict:
    """The bundle's ONNX Runtime tile loop (and ``fused``, the ``export-onnx`` file, if given) against the
    NumPy reference (ORT sessions per member)."""
    import onnxruntime as ort

    import edge_committee as ec
    from edge_committee.cascade.tiles import run_tile_cascade

    run = runners(members)
    mismatched_pixels = mismatched_tiles = 0
    fused_pixels = fused_tiles = 0
    if fused is not None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        session = ort.InferenceSession(str(fused), opts, providers=["CPUExecutionProvider"])
    with ec.load(bundle, threads=1) as model:
        grid, names = model.grid, model.members
        for i in range(0, len(frames), batch):
            part = frames[i:i + batch]
            pred = model.predict(part)
            x = PP(part[..., None])
            later = [lambda idx, n=n: run[n].infer(grid.windows(x, idx)) for n in names[1:]]
            ref = run_tile_cascade(run[names[0]].infer(x), later, grid, model.thresholds, model.confidence,
                                   frame=(192, 384))
            mismatched_pixels += int((pred.labels != ref.labels).sum())
            mismatched_tiles += int((pred.tile_exit_stage != ref.tile_exit_stage).sum())
            if fused is not None:
                labels, exits = session.run(["class_map", "tile_exit_stage"], {"images": part[..., None]})
                fused_pixels += int((labels != ref.labels).sum())
                fused_tiles += int((exits != ref.tile_exit_stage).sum())
    out = {"frames": len(frames), "members": names, "thresholds": model.thresholds,
           "mismatched_pixels": mismatched_pixels, "mismatched_tile_exits": mismatched_tiles}
    if fused is not None:
        out.update(fused_mismatched_pixels=fused_pixels, fused_mismatched_tile_exits=fused_tiles)
    return out


def markdown(result: dict) -> str:
    """The README tables from a results JSON."""
    lines = ["| tile | margin | tiles | large tiled: test mIoU | MACs/frame (M) | cascade reaching it (val thresholds): "
             "test mIoU, deferred, × large tiled, × large frame | cascade ≥ 99 %: test mIoU, deferred, × tiled, × frame |",
             "|---:|---:|---:|---:|---:|---|---|"]
    for g in result["geometries"]:
        def pt(p):
            return "not reached on validation" if p is None else (
                f"{p['test_miou']:.3f}{'' if p['test_reaches'] else ' (misses on test)'}, {100 * p['test_deferred']:.0f} %, "
                f"{p['x_large_tiled']:.2f}, {p['x_large_frame']:.2f}")
        lines.append(f"| {g['tile']} | {g['margin']} | {g['tiles_per_frame']} | {g['test']['large_tiled']:.3f} | "
                     f"{g['large_tiled_macs'] / 1e6:.0f} | {pt(g['reach_large_tiled'])} | {pt(g['reach_99pct'])} |")
    lines += ["", "| tile | margin | " + " | ".join(f"{10 * i} %" for i in range(11)) + " |",
              "|---:|---:|" + "---|" * 11]
    for g in result["geometries"]:
        lines.append(f"| {g['tile']} | {g['margin']} | " + " | ".join(
            f"{s['test_miou']:.3f} ({s['x_large_tiled']:.2f})" for s in g["test_sweep"]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=Path, default=HERE / "members")
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--geometry", nargs="+", default=["64:8"], help="tile:margin pairs (px)")
    ap.add_argument("--time", action="store_true", help="also time the first geometry on one thread")
    ap.add_argument("--time-frames", type=int, default=20)
    ap.add_argument("--time-threshold", type=float, default=None,
                    help="the cascade's threshold for --time (default: where it reaches the large member tiled)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None, help="only print the tables of a results JSON")
    ap.add_argument("--check-bundle", type=Path, default=None,
                    help="only compare this bundle's runtime with the reference on the test split")
    ap.add_argument("--check-fused", type=Path, default=None,
                    help="with --check-bundle: also the bundle's export-onnx file (uint8 192x384x1 frames in)")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    if args.check_bundle:
        with np.load(args.data / "test.npz") as z:
            print(json.dumps(check_bundle(args.check_bundle, z["x"], args.members, fused=args.check_fused)))
        return
    splits = {}
    for k in ("validation", "test"):
        with np.load(args.data / f"{k}.npz") as z:
            splits[k] = (z["x"], z["y"])
    run = runners(args.members)
    rows = []
    for g in args.geometry:
        tile, margin = (int(v) for v in g.split(":"))
        t0 = time.time()
        rows.append(geometry(run, splits, args.members, tile, margin))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "test_sweep"}), f"{time.time() - t0:.0f} s",
              flush=True)
    result = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
              "frames": {k: len(v[0]) for k, v in splits.items()}, "geometries": rows}
    if args.time:
        first = rows[0]
        t = args.time_threshold if args.time_threshold is not None else \
            (first["reach_large_tiled"] or first["reach_99pct"] or {"threshold": 0.9})["threshold"]
        result["wall_time_s_per_frame"] = wall_time(args.members, splits["test"][0][:args.time_frames],
                                                    first["tile"], first["margin"], t)
        result["wall_time_threshold"] = t
        print(json.dumps(result["wall_time_s_per_frame"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
