"""The build pipeline of a video committee (``task: video``).

spec -> ONNX members (copied, checked: (N, C, T, H, W) input, (N, classes) output) -> MACs per clip
on each member's own view -> each member's logits on the validation/test clips (its view of every
clip, batched) -> selection with the classification machinery (members' outputs are (N, C), so
top-1 vs MACs per clip, thresholds by :func:`edge_committee.select.select_cascade`) -> bundle, with
the same staging, manifest, checksums, cached outputs and report as a classification bundle plus
``task``, ``video`` and each member's ``view``.
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edge_committee import __version__
from edge_committee.bundle import OUTPUTS, SCHEMA_VERSION, StagingDir, save_outputs
from edge_committee.errors import EdgeCommitteeError, SpecError
from edge_committee.spec.committee import CommitteeSpec

LOG = logging.getLogger("edge_committee")
SPLITS = ("validation", "test")


def read_clip_split(cfg: Mapping[str, Any], base_dir: Path, where: str, clip_frames: int,
                    num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(clips (N, T, H, W, C) uint8, labels (N,) int64 or None) from an ``npz`` split (keys x, y)."""
    from edge_committee.data.readers import read_npz_arrays, slice_arrays

    if cfg.get("format") != "npz":
        raise SpecError(f"{where}.format: {cfg.get('format')!r}: a video split is an npz file of clips; use "
                        "format: npz (keys x: (N, T, H, W[, C]) uint8 clips, y: (N,) integer labels)")
    p = Path(os.path.expanduser(str(cfg.get("path", ""))))
    p = p if p.is_absolute() else base_dir / p
    xk, yk = cfg.get("images_key", "x"), cfg.get("labels_key", "y")
    x, y = read_npz_arrays(p, cfg, where)
    if x.dtype != np.uint8 or x.ndim not in (4, 5) or (x.ndim == 5 and x.shape[-1] not in (1, 3)):
        raise EdgeCommitteeError(f"{where}: clips {xk!r} must be uint8 (N, T, H, W) or (N, T, H, W, 1|3); "
                                 f"got {x.dtype} {x.shape}")
    x = x[..., None] if x.ndim == 4 else x
    if x.shape[1] != clip_frames:
        raise EdgeCommitteeError(f"{where}: clips of {x.shape[1]} frames, but video.clip_frames is {clip_frames}; "
                                 "cut the clips to that length or change clip_frames")
    if y is not None:
        if not np.issubdtype(y.dtype, np.integer) or y.shape != x.shape[:1]:
            raise EdgeCommitteeError(f"{where}: labels {yk!r} must be integers of shape ({len(x)},); got {y.dtype} "
                                     f"{y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise SpecError(f"{where}: labels range over [{y.min()}, {y.max()}] but the committee has "
                            f"{num_classes} labels")
        y = y.astype(np.int64)
    return slice_arrays(cfg, x, y, where)


def check_video_member(path: Path, name: str, shape: tuple[int, ...], num_classes: int) -> str:
    """The member's input name; its input takes ``shape`` (N, C, T, H, W) and its output is (N, classes)."""
    from edge_committee._lazy import require

    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    inp = model.graph.input[0]
    dims = [d.dim_value or d.dim_param or None for d in inp.type.tensor_type.shape.dim]
    fixed = [d if isinstance(d, int) else None for d in dims]
    if len(dims) != 5 or any(f is not None and f != s for f, s in zip(fixed[1:], shape[1:])):
        raise SpecError(f"member {name!r}: {path.name} input {dims} does not take its view {list(shape)} "
                        "(N, C, T, H, W); check the member's view and preprocessing, or re-export it")
    out = [d.dim_value or None for d in model.graph.output[0].type.tensor_type.shape.dim]
    if out and (len(out) != 2 or out[1] not in (None, num_classes)):
        raise SpecError(f"member {name!r}: {path.name} outputs {out}; a video member outputs (N, {num_classes}) "
                        "logits, one per committee label")
    return inp.name


def clip_logits(runner, clips: np.ndarray, view, pp, batch: int) -> np.ndarray:
    """(N, classes) float32 logits of a member on its view of every clip, ``batch`` clips per call."""
    from edge_committee.cascade.clips import clip_input

    parts = [runner.infer(clip_input(clips[i:i + batch], view, pp)) for i in range(0, len(clips), batch)]
    return np.concatenate(parts).astype(np.float32)


def build_video(spec: CommitteeSpec, out: str | os.PathLike, *, threads: int | None = None,
                log: Callable[[str], None] | None = None, force: bool = False,
                precision: str | None = None) -> dict:
    """Build a video bundle at ``out`` (see the module docstring); returns the manifest."""
    from edge_committee.backend import runner_for
    from edge_committee.cost import count_macs
    from edge_committee.evaluate import accuracy, sha256_file
    from edge_committee.export import copy_member, model_digest
    from edge_committee.member_stages import MemberBuild
    from edge_committee.pipeline import run_selection, selection_data, write_cascade
    from edge_committee.runtime.clips import clips_per_call

    say = log or LOG.info
    if (precision or spec.precision) != "fp32":
        raise SpecError(f"precision: {precision or spec.precision!r}: a video committee builds in fp32 for now; "
                        "set precision: fp32")
    threads = threads or spec.threads
    clip_frames = spec.video.clip_frames
    splits = {k: read_clip_split(spec.data[k], spec.base_dir, f"data.{k}", clip_frames, len(spec.labels))
              for k in SPLITS if k in spec.data}
    if splits["validation"][1] is None:
        raise SpecError("data.validation: a video committee needs labels (key y) to choose its thresholds")
    say("data: " + ", ".join(f"{k} {len(v[0])} clips of {clip_frames} frames" for k, v in splits.items()))
    labels = {k: y for k, (_, y) in splits.items()}
    staging = StagingDir(out, force=force)
    with staging as root:
        (root / "members").mkdir()
        builds = []
        for m in spec.members:
            path = root / "members" / f"{m.name}.fp32.onnx"
            copy_member(m.onnx, path)
            pp, view = m.preprocessing, m.view
            shape = (1, pp.channels, view.frames, *pp.size)
            inp = check_video_member(path, m.name, shape, len(spec.labels))
            macs = int(count_macs(path, {inp: shape}).total_macs)
            runner = runner_for("onnxrt", path, name=m.name, threads=threads)
            batch = min(spec.batch_size, clips_per_call([view], [pp]))  # bounded memory at any clip size
            with runner:
                logits = {k: clip_logits(runner, x, view, pp, batch) for k, (x, _) in splits.items()}
            if logits["validation"].shape[1] != len(spec.labels):
                raise SpecError(f"member {m.name!r}: {path.name} outputs {logits['validation'].shape[1]} classes but "
                                f"the committee has {len(spec.labels)} labels; all members must share one label set")
            bad = {k: int((~np.isfinite(v).all(axis=1)).sum()) for k, v in logits.items()}
            if any(bad.values()):
                raise EdgeCommitteeError(f"member {m.name!r}: non-finite logits on " + ", ".join(
                    f"{n} {k} clips" for k, n in bad.items() if n) + "; check the model and its preprocessing")
            export = {"kind": "onnx", "source": str(m.onnx), "source_sha256": model_digest(m.onnx)}
            builds.append(MemberBuild(m.name, m.name, "fp32", path, macs, m, logits, {"export": export}))
            accs = ", ".join(f"{k} {accuracy(v, labels[k]):.4f}" for k, v in logits.items() if labels[k] is not None)
            say(f"member {m.name}: view {view.frames} frames stride {view.stride} at {pp.size[0]}x{pp.size[1]}, "
                f"{macs / 1e6:.2f} M MACs per clip, {accs}")
        objective, budget = _objective(spec, builds, labels["validation"])
        settings = {"max_members": spec.max_members, "order": spec.order, "confidence": spec.confidence,
                    "stage_overhead": spec.stage_overhead}
        say(f"selecting: {objective} {budget} over {len(builds)} members")
        result = run_selection(selection_data(builds, labels), settings, objective, budget)
        if objective == "accuracy" and spec.budget.macs is not None:
            cap = float(max(b.macs for b in builds) if spec.budget.macs == "largest" else spec.budget.macs)
            if result.chosen.mean_cost > cap:
                raise EdgeCommitteeError(
                    f"budget: the cheapest committee reaching top-1 {float(result.target_accuracy):.4f} on "
                    f"validation costs {result.chosen.mean_cost:.4g} MACs per clip, above budget.macs {cap:.4g}; "
                    "lower budget.accuracy_target or raise budget.macs")
        arrays = {f"{b.name}/{k}": v for b in builds for k, v in b.logits.items()}
        arrays.update({f"labels/{k}": v for k, v in labels.items() if v is not None})
        save_outputs(root / OUTPUTS, arrays)
        members = [_member_entry(b, labels, root) for b in builds]
        manifest = {
            "schema_version": SCHEMA_VERSION, "name": spec.name, "task": "video",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "edge_committee_version": __version__, "labels": list(spec.labels), "precision_mode": "fp32",
            "video": spec.video.to_dict(),
            "data": {k: _data_entry(spec, k, x, y) for k, (x, y) in splits.items()},
            **({"spec": {"path": str(spec.source.resolve()), "sha256": sha256_file(spec.source)}}
               if spec.source is not None else {}),
            "selection": settings, "members": members, "rejected_variants": [], "cascade": {}, "files": {},
        }
        write_cascade(root, manifest, result)
    staging.commit()
    say(f"bundle written to {staging.dest}")
    return manifest


def _data_entry(spec: CommitteeSpec, split: str, x: np.ndarray, y: np.ndarray | None) -> dict:
    """The manifest's record of a split: size, clip shape, a sha256 over the clips and labels, its file."""
    source = dict(spec.data[split])
    p = Path(os.path.expanduser(str(source.get("path", ""))))
    source["path"] = str(p if p.is_absolute() else (spec.base_dir / p).resolve())
    return {"clips": len(x), "labeled": y is not None, "clip_shape": list(x.shape[1:]), "sha256": split_sha256(x, y),
            "source": source}


def split_sha256(x: np.ndarray, y: np.ndarray | None) -> str:
    """sha256 over a split's clips (their shape and bytes) and labels, as the manifest records it."""
    import hashlib

    h = hashlib.sha256(f"{x.shape}\0".encode())
    h.update(np.ascontiguousarray(x).data)
    if y is not None:
        h.update(np.ascontiguousarray(y, np.int64).data)
    return h.hexdigest()


def _member_entry(b, labels: dict, root: Path) -> dict:
    from edge_committee.evaluate import accuracy

    pp, view = b.spec.preprocessing, b.spec.view
    return {"name": b.name, "base": b.base, "file": b.path.relative_to(root).as_posix(), "sha256": "",
            "precision": "fp32", "macs": b.macs, "flops": 2 * b.macs, "view": view.to_dict(),
            "preprocessing": pp.to_dict(), "input_shape": [-1, pp.channels, view.frames, *pp.size], "labels": None,
            "accuracy": {k: accuracy(v, labels.get(k)) for k, v in b.logits.items()}, **b.extra}


def _objective(spec: CommitteeSpec, builds, val_labels: np.ndarray) -> tuple[str, float | str]:
    """(objective, budget) from the spec's budget, in MACs per clip.

    ``macs: largest`` is the largest member's MACs per clip. ``accuracy_target`` picks the cheapest
    candidate reaching a validation top-1: a number in [0, 1], ``best_single``, or ``largest`` (the
    largest member's); its mean MACs must stay within ``macs`` (checked after selection).
    """
    from edge_committee.evaluate import accuracy

    b = spec.budget
    if b.latency_ms is not None:
        raise SpecError("budget.latency_ms: a video committee is chosen by MACs per clip for now; use "
                        "budget.macs (and budget.accuracy_target)")
    if b.accuracy_target is None:
        macs = float(max(x.macs for x in builds) if b.macs == "largest" else b.macs)
        return ("worst_cost" if b.kind == "worst" else "mean_cost"), macs
    target = b.accuracy_target
    if target == "largest":
        largest = max(builds, key=lambda x: x.macs)
        return "accuracy", float(accuracy(largest.logits["validation"], val_labels))
    if target == "best_single" or (isinstance(target, (int, float)) and not isinstance(target, bool)):
        return "accuracy", target
    raise SpecError(f"budget.accuracy_target: {target!r} must be a top-1 in [0, 1], best_single or largest")
