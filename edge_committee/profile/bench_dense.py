"""``bench`` on a segmentation bundle: the tile cascade end to end next to single members on whole frames.

The contenders are those of a classification bench (:func:`~edge_committee.profile.bench.contenders`:
the chosen committee, the largest member, the most accurate member on whole frames, members asked
for), each loaded through :func:`edge_committee.load` (a single member as a one-stage view of the
bundle: it runs on whole frames). They take turns on the same blocks of frames
(:func:`~edge_committee.profile.bench.run_round_robin`). Per contender and batch size: frames/s and
latency of one ``predict`` call, the mIoU of the class maps over the frames benched (one confusion
matrix, with the bundle's ``ignore_index``), the MACs per frame it spent (member 0 on the frame plus
the window MACs of every deferred tile) and the share of tiles deferred. There is no cost-model
prediction: a device profile times members per sample, not per deferred tile.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_committee.bundle import read_manifest
from edge_committee.errors import EdgeCommitteeError
from edge_committee.profile.bench import contenders, latency_stats, run_round_robin
from edge_committee.profile.views import member_view

SCHEMA = "edge_committee.bench/1"


def dense_prediction_stats(preds: list, class_maps: np.ndarray | None, members: Sequence[str], manifest: dict) -> dict:
    """mIoU (with class maps of the predicted grid), MACs per frame and tiles deferred of the predictions."""
    from edge_committee.cascade.tiles import confusion_matrix, miou_from_confusion

    by_name = {m["name"]: m for m in manifest["members"]}
    labels = np.concatenate([p.labels for p in preds])
    exits = np.concatenate([p.tile_exit_stage for p in preds])
    n = len(labels)
    window = [by_name[m]["window_macs"] for m in members[1:]]
    run = [int((exits >= k).sum()) for k in range(1, len(members))]  # tiles each later member ran on
    out = {"images": n, "tile_exit_histogram": np.bincount(exits.ravel(), minlength=len(members)).tolist(),
           "tiles_deferred": float((exits > 0).mean()) if exits.size else 0.0,
           "macs_per_frame": float(by_name[members[0]]["macs"] + sum(w * r for w, r in zip(window, run)) / max(n, 1))}
    if class_maps is not None:
        target = class_maps[:n]
        if target.shape[1:] != labels.shape[1:]:
            raise EdgeCommitteeError(f"bench: the class maps are {target.shape[1]}x{target.shape[2]} but the members "
                                     f"predict on a {labels.shape[1]}x{labels.shape[2]} grid; pass frames and class "
                                     "maps of the members' input size (or no labels)")
        ignore = (manifest.get("segmentation") or {}).get("ignore_index")
        cm = confusion_matrix(labels, target, len(manifest["labels"]), ignore)
        out["accuracy"] = float(miou_from_confusion(cm))
    return out


def bench_segmentation(root: str | os.PathLike, frames, class_maps: np.ndarray | None,
                       batch_sizes: Sequence[int] = (1, 8), backend: str = "onnxrt", threads: int | None = None, *,
                       warmup: int = 3, limit: int | None = None, show_progress: bool = True,
                       manifest: dict | None = None, members: Sequence[str] = (), **options) -> dict:
    """Bench a segmentation bundle's committee against its single members (see the module docstring).

    ``frames``: raw uint8 (N, H, W[, C]); ``class_maps``: (N, H, W) integers on the members' input grid,
    or None (no mIoU). Returns a JSON-ready dict (``task: segmentation``; :func:`bench_markdown`).
    """
    from edge_committee.api import load
    from edge_committee.profile.bench import _progress
    from edge_committee.profile.fingerprint import fingerprint
    from edge_committee.profile.profiler import parse_batches

    root = Path(root)
    manifest = manifest if manifest is not None else read_manifest(root)
    who = contenders(manifest, members)
    results = []
    with contextlib.ExitStack() as stack:
        views = [root if c.role == "cascade" else stack.enter_context(member_view(root, manifest, c.members))
                 for c in who]
        models = [stack.enter_context(load(v, backend=backend, threads=threads, verify=False, **options)) for v in views]
        for b in _progress(parse_batches(batch_sizes), show_progress):
            ms, preds = run_round_robin(models, frames, b, warmup, limit)
            for c, t, p in zip(who, ms, preds):
                results.append({"batch": b, "role": c.role, "members": list(c.members), **latency_stats(t, b),
                                **dense_prediction_stats(p, class_maps, c.members, manifest)})
    largest = max(m["macs"] for m in manifest["members"])
    return {"schema": SCHEMA, "task": "segmentation", "accuracy_metric": "mIoU", "bundle": str(root),
            "backend": backend, "threads": threads, "fingerprint": fingerprint(backend, threads), "profile": None,
            "load_avg": list(os.getloadavg()), "warmup_batches": warmup,
            "images": int(len(frames) if limit is None else min(limit, len(frames))), "largest_macs": largest,
            "segmentation": manifest.get("segmentation"),
            "cascade": {k: manifest["cascade"].get(k) for k in ("members", "thresholds", "objective", "budget",
                                                                 "cost_unit")},
            "results": results}


def bench_markdown(doc: dict) -> str:
    from edge_committee.profile.report import _ms, _pct, speedups

    fp = doc.get("fingerprint") or {}
    load = ", ".join(f"{x:.2f}" for x in doc["load_avg"])
    lines = [f"# Bench: {doc['bundle']} (segmentation)", "",
             f"Backend `{doc['backend']}`, threads {doc['threads'] or 'default'}, CPU {fp.get('cpu', '?')} "
             f"({fp.get('cores', '?')} cores); load average {load} (1/5/15 min) when the bench ended. "
             f"{doc['images']} frames in consecutive full batches, {doc['warmup_batches']} warm-up batches per "
             "contender, then the contenders take turns (round-robin). Latency: wall time of one `predict` call "
             "in ms. A single member runs on whole frames. MACs per frame: the first member on the frame plus "
             "each later member's window MACs per deferred tile; × largest: over the largest member's MACs on a "
             "whole frame.", "",
             "| batch | contender | members | mIoU % | frames/s | p50 ms | p90 ms | mean ms | MACs/frame (M) "
             "| × largest | tiles deferred % |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["results"]:
        deferred = _pct(r["tiles_deferred"]) if len(r["members"]) > 1 else ""
        lines.append(f"| {r['batch']} | {r['role']} | {' > '.join(r['members'])} | {_pct(r.get('accuracy'))} | "
                     f"{r['images_per_s']:,.1f} | {_ms(r['p50_ms'])} | {_ms(r['p90_ms'])} | {_ms(r['mean_ms'])} | "
                     f"{r['macs_per_frame'] / 1e6:,.1f} | {r['macs_per_frame'] / doc['largest_macs']:.2f} | "
                     f"{deferred} |")
    ups = speedups(doc)
    if ups:
        lines += ["", "Cascade speed-up over the largest member on whole frames (mean latency): "
                  + ", ".join(f"{u:.2f}x at batch {b}" for b, u in ups.items()) + "."]
    return "\n".join(lines) + "\n"
