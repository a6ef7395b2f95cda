"""The build pipeline of a segmentation committee (``task: segmentation``).

spec -> ONNX members (copied, checked: dense output, dynamic height/width) -> MACs on a whole frame
and on one tile window -> per-tile statistics on validation/test (:mod:`edge_committee.evaluate.dense`)
-> selection (mIoU vs MACs per frame, :mod:`edge_committee.select.dense`) -> bundle, with the same
staging, manifest, checksums and report as a classification bundle plus ``task``, ``segmentation``
and per-member window MACs and tiled mIoU.
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edge_committee import __version__
from edge_committee.bundle import SCHEMA_VERSION, StagingDir, finalize_manifest
from edge_committee.errors import EdgeCommitteeError, SpecError
from edge_committee.spec.committee import CommitteeSpec

LOG = logging.getLogger("edge_committee")
SPLITS = ("validation", "test")


def read_dense_split(cfg: Mapping[str, Any], base_dir: Path, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(frames (N, H, W, C) uint8, class maps (N, H, W) int64 or None) from an ``npz`` split."""
    from edge_committee.data.readers import as_nhwc_uint8, read_npz_arrays, slice_arrays

    if cfg.get("format") != "npz":
        raise SpecError(f"{where}.format: {cfg.get('format')!r}: a segmentation split is an npz file with frames and "
                        "class maps; use format: npz (keys x: (N, H, W[, C]) uint8, y: (N, H, W) integers)")
    p = Path(os.path.expanduser(str(cfg.get("path", ""))))
    p = p if p.is_absolute() else base_dir / p
    yk = cfg.get("labels_key", "y")
    x, y = read_npz_arrays(p, cfg, where)
    x = as_nhwc_uint8(x, where)
    if y is not None:
        if not np.issubdtype(y.dtype, np.integer) or y.shape != x.shape[:3]:
            raise EdgeCommitteeError(f"{where}: class maps {yk!r} must be integers of shape {x.shape[:3]} (one per "
                                     f"frame pixel); got {y.dtype} {y.shape}")
        y = y.astype(np.int64)
    return slice_arrays(cfg, x, y, where)


def _check_dense_member(path: Path, name: str) -> str:
    """The member's input name; its height and width must be dynamic (later stages run on tile windows)."""
    from edge_committee._lazy import require

    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    inp = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(isinstance(d, str) and d for d in dims[2:]):
        raise SpecError(f"member {name!r}: {path.name} input {dims} needs a dynamic height and width (later stages run "
                        "on tile windows); re-export it with dynamic_axes={'input': {0: 'batch', 2: 'height', "
                        "3: 'width'}}")
    rank = len(model.graph.output[0].type.tensor_type.shape.dim)
    if rank not in (0, 4):
        raise SpecError(f"member {name!r}: {path.name} output has rank {rank}; a segmentation member outputs "
                        "(N, C, H, W) logits")
    return inp.name


def build_segmentation(spec: CommitteeSpec, out: str | os.PathLike, *, threads: int | None = None,
                       log: Callable[[str], None] | None = None, force: bool = False,
                       precision: str | None = None) -> dict:
    """Build a segmentation bundle at ``out`` (see the module docstring); returns the manifest."""
    from edge_committee.backend import runner_for
    from edge_committee.cost import count_macs
    from edge_committee.evaluate import sha256_file
    from edge_committee.evaluate.dense import STATS_FILE, chains, save_stats, split_stats
    from edge_committee.export import copy_member, model_digest
    from edge_committee.select import write_report
    from edge_committee.runtime.tiles import CHUNK_VALUES
    from edge_committee.select.dense import DenseCosts, select_dense, tiled_reference

    say = log or LOG.info
    if (precision or spec.precision) != "fp32":
        raise SpecError(f"precision: {precision or spec.precision!r}: a segmentation committee builds in fp32 for now; "
                        "set precision: fp32")
    if any(m.kind != "onnx" for m in spec.members):
        bad = next(m.name for m in spec.members if m.kind != "onnx")
        raise SpecError(f"members ({bad}): a segmentation member is an ONNX file with dynamic height and width; export "
                        "it with torch.onnx.export(..., dynamic_axes=...) and give 'onnx:'")
    seg, grid = spec.segmentation, spec.segmentation.grid
    threads = threads or spec.threads
    splits = {k: read_dense_split(spec.data[k], spec.base_dir, f"data.{k}") for k in SPLITS if k in spec.data}
    if splits["validation"][1] is None:
        raise SpecError("data.validation: a segmentation committee needs class maps (key y) to choose its thresholds")
    say("data: " + ", ".join(f"{k} {len(v[0])} frames" for k, v in splits.items()))
    staging = StagingDir(out, force=force)
    with staging as root:
        (root / "members").mkdir()
        entries, runners, costs_frame, costs_window = [], {}, {}, {}
        for m in spec.members:
            path = root / "members" / f"{m.name}.fp32.onnx"
            copy_member(m.onnx, path)
            inp = _check_dense_member(path, m.name)
            ch = m.preprocessing.channels
            costs_frame[m.name] = int(count_macs(path, {inp: (1, ch, *m.preprocessing.size)}).total_macs)
            costs_window[m.name] = int(count_macs(path, {inp: (1, ch, *grid.window)}).total_macs)
            runner = runner_for("onnxrt", path, name=m.name, threads=threads)
            runner.output_rank = 4
            runners[m.name] = runner
            entries.append({"name": m.name, "base": m.name, "file": f"members/{m.name}.fp32.onnx", "sha256": "",
                            "precision": "fp32", "macs": costs_frame[m.name], "flops": 2 * costs_frame[m.name],
                            "window_macs": costs_window[m.name], "preprocessing": m.preprocessing.to_dict(),
                            "input_shape": list(m.preprocessing.input_shape(-1)), "labels": None,
                            "export": {"kind": "onnx", "source": str(m.onnx), "source_sha256": model_digest(m.onnx)}})
            say(f"member {m.name}: {costs_frame[m.name] / 1e6:.2f} M MACs per frame, "
                f"{costs_window[m.name] / 1e6:.2f} M per {grid.window[0]}x{grid.window[1]} window")
        costs = DenseCosts(costs_frame, costs_window)
        sequences = chains([m.name for m in spec.members], spec.max_members, spec.order, costs_frame)
        stats = {}
        for r in runners.values():
            r.activate()
        try:
            members = {m.name: (runners[m.name].infer, m.preprocessing) for m in spec.members}
            for k, (x, y) in splits.items():
                if y is None:
                    continue
                per_frame = len(spec.labels) * int(np.prod(spec.members[0].preprocessing.size))
                batch_frames = max(1, min(spec.batch_size, CHUNK_VALUES // per_frame))  # bounded memory
                stats[k] = split_stats(members, x, y, grid, len(spec.labels), sequences, seg.confidence,
                                       seg.ignore_index, batch_frames=batch_frames)
        finally:
            for r in runners.values():
                r.deactivate()
        objective, budget, cap = _objective(spec, costs, stats["validation"])
        say(f"selecting: {objective} {budget} over {len(spec.members)} members and {len(sequences)} chains")
        result = select_dense(stats["validation"], stats.get("test"), costs, sequences, objective, budget,
                              seg.confidence, spec.order, spec.max_members)
        if cap is not None and result.chosen.mean_cost > cap:
            raise EdgeCommitteeError(
                f"budget: the cheapest committee reaching mIoU {float(result.target_accuracy):.4f} on validation costs "
                f"{result.chosen.mean_cost:.4g} MACs per frame, above budget.macs {cap:.4g}; lower "
                "budget.accuracy_target or raise budget.macs")
        from edge_committee.cascade.tiles import miou_from_confusion

        for e in entries:
            e["accuracy"] = {k: miou_from_confusion(s.full_cm(e["name"])) for k, s in stats.items()}
            e["tiled_accuracy"] = {k: tiled_reference(s, e["name"], costs)["miou"] for k, s in stats.items()}
        chosen = _cascade_entry(result, seg.confidence)
        manifest = {
            "schema_version": SCHEMA_VERSION, "name": spec.name, "task": "segmentation",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "edge_committee_version": __version__, "labels": list(spec.labels), "precision_mode": "fp32",
            "segmentation": {**seg.to_dict(), "frame": list(spec.members[0].preprocessing.size),
                             "tiles_per_frame": grid.count(tuple(spec.members[0].preprocessing.size))},
            "data": {k: {"frames": len(v[0]), "labeled": v[1] is not None} for k, v in splits.items()},
            **({"spec": {"path": str(spec.source.resolve()), "sha256": sha256_file(spec.source)}}
               if spec.source is not None else {}),
            "selection": {"max_members": spec.max_members, "order": spec.order, "confidence": seg.confidence},
            "members": entries, "rejected_variants": [], "cascade": chosen, "files": {},
        }
        for e in entries:
            e["labels"] = list(spec.labels)
        write_report(result, root, stem="selection")
        save_stats(root / STATS_FILE, stats)  # select chooses again from these, without running the members
        from edge_committee.pipeline import _write_build_report

        _write_build_report(root, manifest)
        finalize_manifest(root, manifest)
    staging.commit()
    say(f"bundle written to {staging.dest}")
    return manifest


def _cascade_entry(result, tile_confidence: str) -> dict:
    """The manifest's ``cascade`` of a dense selection result."""
    chosen = result.to_dict()
    chosen.update(confidence="max_prob", tile_confidence=tile_confidence, accuracy_metric="mIoU",
                  mean_macs=chosen["mean_cost"], worst_macs=chosen["worst_cost"], cost_unit="MACs per frame")
    return chosen


def reselect_segmentation(root: Path, manifest: dict, objective: str, budget, max_members: int | None = None,
                          order: str | None = None, unsupported: Mapping[str, Any] | None = None) -> dict:
    """Choose a segmentation bundle's committee again from its cached per-tile statistics (``select``).

    ``objective``: ``mean_cost``/``worst_cost`` with ``budget`` in MACs per frame (or ``largest``), or
    ``accuracy`` with a validation mIoU, ``best_single`` or ``largest_tiled``. ``max_members``/``order``
    may narrow the chains the build scored, not add new ones. ``unsupported``: options given that apply
    to classifiers only (refused in one line). Updates ``manifest`` and the reports in ``root``.
    """
    from edge_committee.evaluate.dense import STATS_FILE, chains, load_stats
    from edge_committee.select import write_report
    from edge_committee.select.dense import DenseCosts, select_dense, tiled_reference

    given = [k for k, v in (unsupported or {}).items() if v not in (None, False)]
    if given:
        raise EdgeCommitteeError(f"select {given[0]}: does not apply to a segmentation bundle (chosen by mIoU vs MACs "
                                 "per frame from its tile statistics); use --budget-macs, --budget-kind, "
                                 "--target-accuracy, --max-members or --order")
    if not (root / STATS_FILE).is_file():
        raise EdgeCommitteeError(f"{root}: this segmentation bundle has no cached tile statistics ({STATS_FILE}: "
                                 "built before select supported segmentation); rebuild it")
    stats = load_stats(root / STATS_FILE)
    if "validation" not in stats:
        raise EdgeCommitteeError(f"{root}: {STATS_FILE} has no validation statistics; rebuild the bundle")
    costs = DenseCosts({m["name"]: m["macs"] for m in manifest["members"]},
                       {m["name"]: m["window_macs"] for m in manifest["members"]})
    settings = dict(manifest.get("selection") or {})
    settings.update({k: v for k, v in (("max_members", max_members), ("order", order)) if v is not None})
    names = [m["name"] for m in manifest["members"]]
    sequences = chains(names, settings["max_members"], settings["order"], costs.frame)
    have = stats["validation"].prefixes
    missing = next((seq for seq in sequences if any(seq[:k] not in have for k in range(1, len(seq) + 1))), None)
    if missing is not None:
        built = manifest.get("selection") or {}
        raise EdgeCommitteeError(f"select: the build scored chains of at most {built.get('max_members')} members in "
                                 f"{built.get('order')} order; {' > '.join(missing)} is not among them, so it cannot be "
                                 "chosen without running the members: rebuild with that selection")
    if budget == "largest":
        budget = float(max(costs.frame.values()))
    elif budget == "largest_tiled":
        budget = tiled_reference(stats["validation"], max(costs.frame, key=costs.frame.get), costs)["miou"]
    seg = manifest["segmentation"]
    result = select_dense(stats["validation"], stats.get("test"), costs, sequences, objective, budget,
                          seg["confidence"], settings["order"], settings["max_members"])
    manifest["cascade"] = _cascade_entry(result, seg["confidence"])
    manifest["selection"] = settings
    write_report(result, root, stem="selection")
    from edge_committee.pipeline import _write_build_report

    _write_build_report(root, manifest)
    return manifest


def _objective(spec: CommitteeSpec, costs, val) -> tuple[str, float | str, float | None]:
    """(objective, budget, MACs cap) from the spec's budget, in MACs per frame.

    ``macs: largest`` is the largest member's MACs on a whole frame. ``accuracy_target`` picks the
    cheapest candidate reaching a validation mIoU (a number in [0, 1], ``best_single``, or
    ``largest_tiled``: the largest member's mIoU when run on every tile window), whose mean MACs
    must stay within ``macs`` (the cap).
    """
    from edge_committee.select.dense import tiled_reference

    b = spec.budget
    if b.latency_ms is not None:
        raise SpecError("budget.latency_ms: a segmentation committee is chosen by MACs per frame for now; use "
                        "budget.macs (and budget.accuracy_target)")
    macs = float(max(costs.frame.values()) if b.macs == "largest" else b.macs)
    if b.accuracy_target is None:
        return ("worst_cost" if b.kind == "worst" else "mean_cost"), macs, None
    target = b.accuracy_target
    if target == "largest_tiled":
        largest = max(costs.frame, key=costs.frame.get)
        target = tiled_reference(val, largest, costs)["miou"]
    elif not (target == "best_single" or (isinstance(target, (int, float)) and not isinstance(target, bool))):
        raise SpecError(f"budget.accuracy_target: {target!r} must be a mIoU in [0, 1], best_single or largest_tiled")
    return "accuracy", target, macs
