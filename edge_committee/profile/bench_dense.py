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

import os
from collections.abc import Sequence

import numpy as np

from edge_committee.errors import EdgeCommitteeError
from edge_committee.profile.bench_task import SCHEMA, bench_task, task_markdown

__all__ = ["SCHEMA", "bench_markdown", "bench_segmentation", "dense_prediction_stats"]


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
    return bench_task(root, frames, lambda p, m, man: dense_prediction_stats(p, class_maps, m, man),
                      task="segmentation", metric="mIoU", batch_sizes=batch_sizes, backend=backend, threads=threads,
                      warmup=warmup, limit=limit, show_progress=show_progress, manifest=manifest, members=members,
                      extra=lambda man: {"segmentation": man.get("segmentation")}, **options)


def bench_markdown(doc: dict) -> str:
    from edge_committee.profile.report import _ms, _pct

    def row(r: dict, doc: dict) -> str:
        deferred = _pct(r["tiles_deferred"]) if len(r["members"]) > 1 else ""
        return (f"{_pct(r.get('accuracy'))} | {r['images_per_s']:,.1f} | {_ms(r['p50_ms'])} | {_ms(r['p90_ms'])} | "
                f"{_ms(r['mean_ms'])} | {r['macs_per_frame'] / 1e6:,.1f} | "
                f"{r['macs_per_frame'] / doc['largest_macs']:.2f} | {deferred}")

    return task_markdown(
        doc, what="segmentation",
        intro=(f"{doc['images']} frames in consecutive full batches, {doc['warmup_batches']} warm-up batches per "
               "contender, then the contenders take turns (round-robin). Latency: wall time of one `predict` call "
               "in ms. A single member runs on whole frames. MACs per frame: the first member on the frame plus "
               "each later member's window MACs per deferred tile; × largest: over the largest member's MACs on a "
               "whole frame."),
        header="mIoU % | frames/s | p50 ms | p90 ms | mean ms | MACs/frame (M) | × largest | tiles deferred %",
        row=row, speedup="on whole frames (mean latency)")
