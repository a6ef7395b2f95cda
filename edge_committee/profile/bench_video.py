"""``bench`` on a video bundle: the clip cascade end to end next to single members, on the same clips.

The contenders are those of a classification bench (:func:`~edge_committee.profile.bench.contenders`:
the chosen committee, the largest member, the most accurate member by validation top-1, members
asked for), each loaded through :func:`edge_committee.load` (a single member as a one-stage view of
the bundle: it classifies every clip from its own view). They take turns on the same blocks of clips
(:func:`~edge_committee.profile.bench.run_round_robin`). Per contender and batch size (clips per
``predict`` call): clips/s and latency of one call, top-1 over the clips benched (with labels), the
MACs per clip it spent (each member's MACs on its own view times the share of clips that reached it,
:func:`~edge_committee.cascade.clips.clip_macs`) and the share of clips deferred past the first
member. There is no cost-model prediction: a device profile times members on images, not on clips.

Clips come from ``--source`` (:func:`read_video_source`): the bundle's test split as built (checked
against its sha256), a spec YAML's test split, an ``.npz`` (x, y), an ``.npy`` of clips, or a video
file cut into consecutive clips of the bundle's ``clip_frames``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_committee.errors import EdgeCommitteeError
from edge_committee.profile.bench_task import SCHEMA, bench_task, task_markdown

__all__ = ["SCHEMA", "bench_markdown", "bench_video", "clip_prediction_stats", "read_video_source"]


def read_video_source(source: str | None, manifest: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """(clips (N, T, H, W, C) uint8, labels (N,) or None) for a video bench (see the module docstring)."""
    from edge_committee.pipeline_video import read_clip_split, split_sha256
    from edge_committee.runtime.clips import NPY_SUFFIXES, as_clips, clips_from_video

    clip_frames, classes = int(manifest["video"]["clip_frames"]), len(manifest["labels"])
    if source is None:
        entry = ((manifest.get("data") or {}).get("test")) or {}
        if "source" not in entry:
            raise EdgeCommitteeError("bench: the bundle does not record its test clips (built before this release); "
                                     "pass --source committee.yaml, CLIPS.npz (x, y), CLIPS.npy or a video file")
        x, y = read_clip_split(entry["source"], Path("/"), "the bundle's data.test", clip_frames, classes)
        if split_sha256(x, y) != entry.get("sha256"):
            raise EdgeCommitteeError(f"bench: the bundle's test clips ({entry['source'].get('path')}) changed since "
                                     "the build (sha256 differs); pass --source")
        return x, y
    p = Path(source)
    if p.suffix in (".yaml", ".yml"):
        from edge_committee.spec.committee import load_spec

        spec = load_spec(p)
        which = "test" if "test" in spec.data else "validation"
        return read_clip_split(spec.data[which], spec.base_dir, f"{p}: data.{which}", clip_frames, classes)
    if p.suffix == ".npz":
        return read_clip_split({"format": "npz", "path": str(p.resolve())}, Path("/"), str(p), clip_frames, classes)
    if not p.is_file():
        raise EdgeCommitteeError(f"--source {source}: no such file (a video bench reads committee.yaml, CLIPS.npz "
                                 "(x, y), CLIPS.npy or a video file)")
    if p.suffix.lower() in NPY_SUFFIXES:
        try:
            clips = np.load(p, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise EdgeCommitteeError(f"{p}: cannot read ({exc})") from None
        return as_clips(clips), None
    return clips_from_video(p, clip_frames)[0], None


def clip_prediction_stats(preds: list, labels: np.ndarray | None, members: Sequence[str], manifest: dict) -> dict:
    """Top-1 (with labels), MACs per clip spent, exits per stage and the share of clips deferred."""
    from edge_committee.cascade.clips import clip_macs

    by_name = {m["name"]: m for m in manifest["members"]}
    pred = np.concatenate([p.labels for p in preds])
    exits = np.concatenate([p.exit_stage for p in preds])
    out = {"images": int(pred.size), "exit_histogram": np.bincount(exits, minlength=len(members)).tolist(),
           "deferred": float((exits > 0).mean()) if exits.size else 0.0,
           "macs_per_clip": clip_macs([by_name[m]["macs"] for m in members], exits)}
    if labels is not None:
        out["accuracy"] = float(np.mean(pred == np.asarray(labels[: pred.size])))
    return out


def bench_video(root: str | os.PathLike, clips, labels: np.ndarray | None, batch_sizes: Sequence[int] = (1, 16),
                backend: str = "onnxrt", threads: int | None = None, *, warmup: int = 3, limit: int | None = None,
                show_progress: bool = True, manifest: dict | None = None, members: Sequence[str] = (),
                **options) -> dict:
    """Bench a video bundle's committee against its single members (see the module docstring).

    ``clips``: raw uint8 (N, T, H, W[, C]); ``labels``: (N,) or None (no top-1). Returns a JSON-ready
    dict (``task: video``; :func:`bench_markdown`).
    """
    return bench_task(root, clips, lambda p, m, man: clip_prediction_stats(p, labels, m, man),
                      task="video", metric="top-1", batch_sizes=batch_sizes, backend=backend, threads=threads,
                      warmup=warmup, limit=limit, show_progress=show_progress, manifest=manifest, members=members,
                      extra=lambda man: {"video": man.get("video"),
                                         "views": {m["name"]: m.get("view") for m in man["members"]}},
                      **options)


def bench_markdown(doc: dict) -> str:
    from edge_committee.profile.report import _ms, _pct

    def row(r: dict, doc: dict) -> str:
        deferred = _pct(r["deferred"]) if len(r["members"]) > 1 else ""
        return (f"{_pct(r.get('accuracy'))} | {r['images_per_s']:,.1f} | {_ms(r['p50_ms'])} | {_ms(r['p90_ms'])} | "
                f"{_ms(r['mean_ms'])} | {r['macs_per_clip'] / 1e6:.3g} | "
                f"{r['macs_per_clip'] / doc['largest_macs']:.2f} | {deferred}")

    clip = (doc.get("video") or {}).get("clip_frames", "?")
    return task_markdown(
        doc, what="video",
        intro=(f"{doc['images']} clips of {clip} frames in consecutive full batches (batch: clips per `predict` "
               f"call), {doc['warmup_batches']} warm-up batches per contender, then the contenders take turns "
               "(round-robin). Latency: wall time of one `predict` call in ms (each member cuts and preprocesses its "
               "own view). MACs per clip: each member's MACs on its view times the share of clips that reached it; "
               "× largest: over the largest member's MACs per clip."),
        header="top-1 % | clips/s | p50 ms | p90 ms | mean ms | MACs/clip (M) | × largest | deferred %",
        row=row, speedup="(mean latency per call)")
