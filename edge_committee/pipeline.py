"""The build pipeline: spec -> ONNX members -> (precision) -> evaluation -> selection -> bundle.

Each stage lives in its own module or subpackage (the member stages in
:mod:`edge_committee.member_stages`); this module only composes them, in the order of design.md
§2, and writes the bundle (:mod:`edge_committee.bundle`) atomically. Every step that takes more
than a second shows a progress bar on a terminal: the members (one tick each), each member's
evaluation per split (its batches), profiling (its timings).
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from edge_committee import __version__
from edge_committee.bundle import (
    OUTPUTS,
    SCHEMA_VERSION,
    StagingDir,
    edit_bundle,
    finalize_manifest,
    load_outputs,
    save_outputs,
    write_json_atomic,
)
from edge_committee._util import bars_and_logs, progress, write_bytes_atomic
from edge_committee.data.readers import RawSplit, read_split
from edge_committee.errors import EdgeCommitteeError, SpecError
from edge_committee.evaluate import OutputCache, sha256_file
from edge_committee.member_stages import (
    SPLITS,
    MemberBuild,
    calibration_sample,
    member_candidates,
    member_entry,
)
from edge_committee.spec.committee import CommitteeSpec, load_spec

LOG = logging.getLogger("edge_committee")
BUDGET_OBJECTIVE = {"worst": "worst_cost", "mean": "mean_cost"}


# ------------------------------------------------------------------------------ the build
def read_splits(spec: CommitteeSpec) -> dict[str, RawSplit]:
    splits = {}
    for name in SPLITS:
        if name in spec.data:
            splits[name] = read_split(spec.data[name], spec.base_dir, spec.labels, f"data.{name}")
    for name, s in splits.items():
        if s.labels is not None and (s.labels.min() < 0 or s.labels.max() >= len(spec.labels)):
            raise SpecError(
                f"data.{name}: labels range over [{s.labels.min()}, {s.labels.max()}] but the "
                f"committee has {len(spec.labels)} labels"
            )
    return splits


def resolve_budget(spec: CommitteeSpec, builds: list[MemberBuild]) -> tuple[float, str]:
    """(budget value, cost unit) from the spec's budget; ``macs: largest`` is resolved here."""
    b = spec.budget
    if b.latency_ms is not None:
        return float(b.latency_ms), "ms"
    if b.macs == "largest":
        return float(max(mb.macs for mb in builds)), "MACs"  # MACs do not depend on precision
    return float(b.macs), "MACs"


def build(
    spec: str | os.PathLike | CommitteeSpec,
    out: str | os.PathLike,
    *,
    precision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    force: bool = False,
) -> dict:
    """Build a bundle at ``out`` from a committee spec; returns the manifest.

    Args:
        spec: the spec file (YAML) or an already loaded :class:`CommitteeSpec`.
        out: the bundle folder (replaced atomically if it is a bundle already).
        precision: ``fp32``, ``fp16``, ``int8`` or ``auto``; overrides the spec's.
        cache_dir: where member outputs are cached (default ``~/.cache/edge_committee``).
        use_cache: read and write the output cache (default True).
        threads: ONNX Runtime threads (default: the spec's, else ONNX Runtime's choice).
        log: called with one line per step (default: the ``edge_committee`` logger).
        force: replace ``out`` even if it is not one of our bundles (default False: refused, so
            nothing of the user's is deleted).
    """
    say = log or LOG.info
    spec = spec if isinstance(spec, CommitteeSpec) else load_spec(spec)
    if spec.task == "segmentation":
        from edge_committee.pipeline_dense import build_segmentation

        return build_segmentation(spec, out, threads=threads, log=log, force=force, precision=precision)
    if spec.task == "video":
        from edge_committee.pipeline_video import build_video

        return build_video(spec, out, threads=threads, log=log, force=force, precision=precision)
    mode = precision or spec.precision
    threads = threads or spec.threads
    cache = OutputCache(cache_dir, enabled=use_cache)
    splits = read_splits(spec)
    say("data: " + ", ".join(f"{k} {len(v)} samples" for k, v in splits.items()))
    calib = calibration_sample(spec, splits) if mode != "fp32" else None
    staging = StagingDir(out, force=force)
    with staging as root:
        members_dir = root / "members"
        members_dir.mkdir()
        builds: list[MemberBuild] = []
        rejected: list[dict] = []
        with bars_and_logs():
            for m in progress(spec.members, total=len(spec.members), desc="members", unit="member"):
                kept, dropped = member_candidates(spec, m, splits, members_dir, cache, threads, mode, calib, say)
                builds += kept
                rejected += dropped
        if not builds:
            raise EdgeCommitteeError(
                "every member was excluded (non-finite outputs): "
                + "; ".join(f"{r['member']}: {r['reason']}" for r in rejected)
            )
        manifest = _select_and_write(spec, builds, splits, root, mode, rejected, say, threads)
    staging.commit()
    say(f"bundle written to {staging.dest}")
    return manifest


# ------------------------------------------------------------------------------ selection
def selection_data(builds: list[MemberBuild], labels: dict[str, np.ndarray | None], costs=None,
                   unit: str = "ms"):
    """Selection inputs from the builds; costs are MACs, or ``costs`` (a profile, in ``unit``)."""
    from edge_committee.select import SelectionData

    has_test = all("test" in b.logits for b in builds)
    return SelectionData(
        val_logits={b.name: b.logits["validation"] for b in builds},
        test_logits={b.name: b.logits["test"] for b in builds} if has_test else None,
        costs=costs or {b.name: b.macs for b in builds},
        val_labels=labels.get("validation"),
        test_labels=labels.get("test") if has_test else None,
        cost_unit="MACs" if costs is None else unit,
        groups={b.name: b.base for b in builds},  # one model at two precisions is never paired
    )


def run_selection(data, spec_like: dict, objective: str, budget: float | str):
    from edge_committee.select import select_cascade

    return select_cascade(
        data,
        objective,
        budget,
        max_len=int(spec_like["max_members"]),
        order=spec_like["order"],
        confidence=spec_like["confidence"],
        stage_overhead=float(spec_like["stage_overhead"]),
        reference=spec_like.get("reference"),
        combiner=spec_like.get("combiner"),
        search=spec_like.get("search", "auto"),
        confidence_level=spec_like.get("confidence_level"),
    )


def _data_entry(spec: CommitteeSpec, name: str, split: RawSplit) -> dict:
    """The manifest's record of a split: its hash, and where it came from and its image size, so
    that ``profile`` and ``bench`` find it again on the build machine."""
    entry = {"samples": len(split), "sha256": split.content_hash(), "labeled": split.labels is not None,
             "image_shape": _image_shape(split)}
    source = dict(spec.data[name])
    for key in ("images", "labels", "path"):
        if key in source:
            p = Path(os.path.expanduser(str(source[key])))
            source[key] = str(p if p.is_absolute() else (spec.base_dir / p).resolve())
    entry["source"] = source
    return entry


def _profile_for_budget(spec, root: Path, members: list[dict], splits, data, threads, say):
    """Profile the members on this machine (budget.latency_ms), write the profile into the
    bundle in the making, and cost the selection data by it at the budget's batch size."""
    from edge_committee.profile import (
        DEFAULT_BATCHES, STAT_FOR_KIND, LatencyModel, profile_entry, profile_members, save_profile,
    )

    b = spec.budget.batch
    say(f"profiling {len(members)} members on this machine for budget.latency_ms (batch {b})")
    images = splits["validation"].images
    timed = [{**m, "sha256": sha256_file(root / m["file"])} for m in members]
    manifest = {"members": timed, "labels": list(spec.labels), "cascade": {"confidence": spec.confidence}}
    doc = profile_members(root, manifest, "onnxrt", sorted({*DEFAULT_BATCHES, b}), threads,
                          images=images if isinstance(images, np.ndarray) else None)
    save_profile(root, doc)
    say(f"profile {doc['name']}: {doc['duration_s']:.1f} s")
    model = LatencyModel.from_profile(doc, STAT_FOR_KIND[spec.budget.kind])
    return data.with_stage_costs(model.stage_costs([m["name"] for m in members], b)), {
        doc["name"]: profile_entry(doc)}


def _select_and_write(spec, builds, splits, root, mode, rejected, say, threads=None) -> dict:
    labels = {k: s.labels for k, s in splits.items()}
    names = [b.name for b in builds]
    if len(set(names)) != len(names):  # spec names cannot end in a precision suffix: a bug if reached
        raise RuntimeError(f"two member candidates are named {next(n for n in names if names.count(n) > 1)!r}")
    budget, unit = resolve_budget(spec, builds)
    objective = BUDGET_OBJECTIVE[spec.budget.kind]
    settings = {
        "max_members": spec.max_members,
        "order": spec.order,
        "confidence": spec.confidence,
        "stage_overhead": spec.stage_overhead,
        **({"combiner": spec.combiner} if spec.combiner not in (None, "average") else {}),
    }
    members = [member_entry(b, labels, root) for b in builds]
    sample = _validation_sample(splits)
    data, profiles = selection_data(builds, labels), {}
    if spec.budget.latency_ms is not None:
        data, profiles = _profile_for_budget(spec, root, members, splits, data, threads, say)
    say(f"selecting: {objective} <= {budget:.4g} {unit} over {len(builds)} member candidates")
    result = run_selection(data, settings, objective, budget)
    arrays = {f"{b.name}/{k}": v for b in builds for k, v in b.logits.items()}
    arrays.update({f"labels/{k}": v for k, v in labels.items() if v is not None})
    save_outputs(root / OUTPUTS, arrays)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": spec.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "edge_committee_version": __version__,
        "labels": list(spec.labels),
        "precision_mode": mode,
        "data": {k: _data_entry(spec, k, s) for k, s in splits.items()},
        **({"spec": {"path": str(spec.source.resolve()), "sha256": sha256_file(spec.source)}}
           if spec.source is not None else {}),
        "selection": settings,
        "members": members,
        "rejected_variants": rejected,
        "cascade": {},
        "files": {},
    }
    if profiles:
        manifest["profiles"] = profiles
    write_cascade(root, manifest, result, images=sample)
    return manifest


def _validation_sample(splits: dict) -> np.ndarray | None:
    """A few validation images for the quick measured checks (:mod:`edge_committee.profile.quick`)."""
    from edge_committee.profile.quick import check_seconds, validation_images

    split = splits.get("validation")
    return validation_images(split.images) if split is not None and check_seconds() > 0 else None


def _image_shape(split: RawSplit) -> list[int] | None:
    """[H, W, C] when every image of the split has one size (the fused file's default source size)."""
    images = split.images
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [int(d) for d in images.shape[1:]]
    return None


def write_cascade(root: Path, manifest: dict, result, finalize: bool = True, images: np.ndarray | None = None) -> dict:
    """Put the selection result into the manifest, write the reports and (``finalize``) checksums.

    ``images``: a few raw validation images for the quick measured checks (default: read from the
    split the manifest records)."""
    from edge_committee.select import write_report

    chosen = result.to_dict()
    by_name = {m["name"]: m for m in manifest["members"]}
    chosen["mean_macs"] = chosen["mean_cost"] if chosen["cost_unit"] == "MACs" else None
    chosen["worst_macs"] = sum(by_name[n]["macs"] for n in chosen["members"])
    _write_combiner(root, manifest, result, chosen)
    manifest["cascade"] = chosen
    _measured_checks(root, manifest, images)
    labels = manifest.get("labels") or []
    for m in manifest["members"]:
        m["labels"] = labels
    write_report(result, root, stem="selection")
    _write_build_report(root, manifest)
    if finalize:
        finalize_manifest(root, manifest)
    return manifest


def _measured_checks(root: Path, manifest: dict, images: np.ndarray | None) -> None:
    """Each member's preprocessing time (measured once per bundle) and, for a cascade chosen by MACs,
    whether it is faster end to end than the largest member here; a warning line when it is not."""
    from edge_committee.profile import quick

    c, members = manifest["cascade"], manifest["members"]
    if manifest.get("task", "classification") != "classification":
        return  # the checks time image preprocessing and members on images
    needs_pp = any("preprocess_cost" not in m for m in members)
    if quick.check_seconds() <= 0 or not (needs_pp or c.get("cost_unit") == "MACs"):
        return
    images = images if images is not None else quick.validation_images(manifest=manifest)
    if needs_pp:
        costs = quick.preprocess_costs(members, images)
        for m in members:
            if m["name"] in costs:
                m["preprocess_cost"] = costs[m["name"]]
    if c.get("cost_unit") == "MACs" and (check := quick.end_to_end_check(root, manifest, images)):
        c["end_to_end"] = check
        if line := quick.slower_warning(check, manifest):
            LOG.warning("warning: %s", line)


def _write_combiner(root: Path, manifest: dict, result, chosen: dict) -> None:
    """Write a learned committee's stage combiners as ONNX (``combiner/stage<k>.onnx``).

    Combiner files of an earlier selection are removed from the folder and from the manifest's
    file list first (a re-selection runs in a staging copy: unlinking a hard link there leaves
    the original bundle intact).
    """
    files = manifest.setdefault("files", {})
    for rel in [r for r in files if r.startswith("combiner/")]:
        (root / rel).unlink(missing_ok=True)
        del files[rel]
    from edge_committee.select import LEARNED_KINDS

    c = result.chosen
    if c.kind not in LEARNED_KINDS:
        return
    from edge_committee.cascade.learned_onnx import save_combiner

    front = result.frontier
    rels = []
    for k, comb in enumerate(front.fits.stage_combiners(c.members)):
        rel = f"combiner/stage{k}.onnx"
        save_combiner(comb, root / rel)
        files[rel] = ""  # listed, so an edit's finalize hashes it
        rels.append(rel)
    chosen["combiner"] = {**front.combiner.to_dict(), "form": "per_class_log_prob", "files": rels,
                          "fitted_on": "validation"}


def _write_build_report(root: Path, manifest: dict) -> None:
    from edge_committee.bundle.report import build_report_markdown

    write_json_atomic(root / "report.json",
                      {k: v for k, v in manifest.items() if k not in ("files", "manifest_sha256")})
    write_bytes_atomic(root / "report.md", build_report_markdown(manifest, root).encode("utf-8"))


# ------------------------------------------------------------------------------ re-selection
def reselect(
    bundle: str | os.PathLike,
    objective: str,
    budget: float | str,
    *,
    profile: str | os.PathLike | None = None,
    confidence: str | None = None,
    max_members: int | None = None,
    order: str | None = None,
    stage_overhead: float | None = None,
    reference: str | None = None,
    combiner=None,
    latency: bool = False,
    batch: int = 1,
    backend: str = "onnxrt",
    threads: int | None = None,
    search: str | None = None,
    confidence_level: float | None = None,
) -> dict:
    """Choose again from a bundle's cached outputs and rewrite its cascade and reports in place.

    Costs are MACs, or latencies in ms when ``latency`` is set or a ``profile`` is given: a
    device profile (a name in the bundle or a file; by default this device's for ``backend`` and
    ``threads``, see :mod:`edge_committee.profile`), costing calls of ``batch`` images, or an older
    hand-written profile file ``{"unit": "ms", "members": {name: ms}}``.
    Nothing is rebuilt or re-run, and the member files are untouched. The new manifest and
    reports are written into a staging copy of the bundle (hard links to the unchanged files),
    which then replaces the bundle in one rename: a failure leaves the old bundle as it was.
    """
    with edit_bundle(bundle) as ed:
        if ed.manifest.get("task", "classification") == "segmentation":
            from edge_committee.pipeline_dense import reselect_segmentation

            classifier_only = {"--budget-ms": budget if latency else None, "--profile": profile,
                               "--confidence": confidence, "--stage-overhead": stage_overhead,
                               "--reference": reference, "--combiner": combiner, "--search": search,
                               "--confidence-level": confidence_level}
            before = _cascade_key(ed.manifest)
            manifest = reselect_segmentation(ed.path, ed.manifest, objective, budget, max_members, order,
                                             classifier_only)
            if _cascade_key(manifest) != before:
                _drop_cascade_artifacts(ed)  # a fused tile cascade file of the old thresholds
            return manifest
        task = ed.manifest.get("task", "classification")
        if task == "video" and (latency or profile is not None):
            raise EdgeCommitteeError(f"{bundle}: a video bundle is re-selected by MACs per clip for now; drop "
                                     "--budget-ms/--profile (use --budget-macs or --target-accuracy)")
        if task not in ("classification", "video"):  # a video bundle caches its members' (N, C) outputs
            raise EdgeCommitteeError(f"{bundle}: a {ed.manifest['task']} bundle cannot be re-selected yet; rebuild it "
                                     "with another budget")
        if budget == "largest_tiled":
            raise EdgeCommitteeError("--target-accuracy largest_tiled: applies to segmentation bundles only; use a "
                                     "number in [0, 1] or best_single")
        before = _cascade_key(ed.manifest, ed.path)
        latency_opts = {"latency": latency, "batch": batch, "backend": backend, "threads": threads,
                        "where": bundle}
        extra = {k: v for k, v in (("search", search), ("confidence_level", confidence_level)) if v is not None}
        manifest = _reselect_into(ed.path, ed.manifest, objective, budget, profile, confidence, max_members,
                                  order, stage_overhead, reference, combiner, latency_opts, extra)
        if _cascade_key(manifest, ed.path) != before:
            _drop_cascade_artifacts(ed)
    return manifest


def _cascade_key(manifest: dict, root: Path | None = None) -> tuple:
    """What a fused file or whole-cascade engine encodes: members, thresholds, confidence and
    (with ``root``) the content of a learned committee's stage combiners."""
    c = manifest.get("cascade") or {}
    key = (tuple(c.get("members") or ()), tuple(c.get("thresholds") or ()), c.get("confidence"))
    comb = c.get("combiner")
    if root is None or not isinstance(comb, dict):
        return key
    return key + tuple(sha256_file(root / rel) for rel in comb.get("files") or [] if (root / rel).is_file())


def _drop_cascade_artifacts(ed) -> None:
    """Remove what encodes the old cascade: fused ONNX files and whole-cascade TensorRT engines.

    Member engines and profiles stay valid (they depend on the member files only).
    """
    from edge_committee.backend.tensorrt.engines import SECTION as TRT
    from edge_committee.export.cascade_onnx.export import MANIFEST_KEY as FUSED

    key = _cascade_key(ed.manifest)
    learned = bool((ed.manifest.get("cascade") or {}).get("combiner"))
    kept = []
    for entry in ed.manifest.get(FUSED, []):
        c = entry.get("cascade") or {}
        same = (tuple(c.get("members") or ()), tuple(c.get("thresholds") or ()), c.get("confidence")) == key
        if same and not learned:  # a learned file's combiners may have been refitted: never kept
            kept.append(entry)
        else:
            ed.remove(entry["file"])
    if FUSED in ed.manifest:
        ed.manifest[FUSED] = kept
    section = ed.manifest.get(TRT) or {}
    if section.get("engines"):
        for entry in section["engines"]:
            if entry.get("kind") == "cascade":
                ed.remove(entry["file"])
        section["engines"] = [e for e in section["engines"] if e.get("kind") != "cascade"]


def _reselect_into(root: Path, manifest: dict, objective, budget, profile, confidence, max_members, order,
                   stage_overhead, reference, combiner=None, latency_opts: dict | None = None,
                   extra: dict | None = None) -> dict:
    arrays = load_outputs(root)
    settings = {**(manifest.get("selection") or {}), **(extra or {})}
    for key, val in (("confidence", confidence), ("max_members", max_members), ("order", order),
                     ("stage_overhead", stage_overhead), ("reference", reference), ("combiner", combiner)):
        if val is not None:
            settings[key] = val
    if settings.get("combiner") == "average":
        del settings["combiner"]
    names = [m["name"] for m in manifest["members"]]
    costs, unit, stage_costs = None, "ms", None
    opts = latency_opts or {}
    from edge_committee.profile import is_legacy_profile, latency_stage_costs

    if (profile is not None or opts.get("latency")) and not is_legacy_profile(manifest, profile):
        kind = "worst" if objective == "worst_cost" else "mean"
        stage_costs = latency_stage_costs(root, manifest, profile, kind, opts.get("batch", 1),
                                          opts.get("backend", "onnxrt"), opts.get("threads"), opts.get("where"))
    elif profile is not None:
        from edge_committee.select import load_profile

        prof = load_profile(profile)
        missing = [n for n in names if n not in prof.costs]
        if missing:
            raise EdgeCommitteeError(f"{profile}: no latency for member {missing[0]!r} (has {sorted(prof.costs)})")
        costs, unit = {n: prof.costs[n] for n in names}, prof.unit
    builds = [
        MemberBuild(m["name"], m.get("base", m["name"]), m["precision"], root / m["file"], int(m["macs"]), None,
                    {k: arrays[f"{m['name']}/{k}"] for k in SPLITS if f"{m['name']}/{k}" in arrays})
        for m in manifest["members"]
    ]
    labels = {k: arrays.get(f"labels/{k}") for k in SPLITS}
    if budget == "largest":
        budget = float(max(b.macs for b in builds))
    data = selection_data(builds, labels, costs, unit)
    if stage_costs is not None:
        data = data.with_stage_costs(stage_costs)
    result = run_selection(data, settings, objective, budget)
    manifest["selection"] = settings
    write_cascade(root, manifest, result, finalize=False)
    return manifest
