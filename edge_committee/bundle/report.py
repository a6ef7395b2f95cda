"""The build report (``report.md``): members, the chosen committee and the largest member."""

from __future__ import annotations


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _m(x) -> str:
    return "–" if x is None else f"{x / 1e6:.2f}"


def _pp_ms(member: dict) -> str:
    """The member's measured preprocessing time per image (at the validation image size)."""
    cost = member.get("preprocess_cost")
    return "–" if not cost else f"{cost['ms_per_image']:.3g}"


def _end_to_end(c: dict) -> list[str]:
    """The quick end-to-end check of a MACs-chosen cascade against the largest member."""
    e = c.get("end_to_end")
    if not e:
        return []
    verdict = "faster" if e["faster"] else "**not faster** (MACs leave out preprocessing and per-stage work)"
    exits = f", exits per stage {e['exits']}" if e.get("exits") else ""
    return [f"\nEnd to end on the build machine ({e['images']} validation images{exits}; preprocessing + ONNX "
            f"Runtime on 1 thread): the chosen cascade {e['cascade_ms_per_image']:.3g} ms/image, the largest member "
            f"{e['largest']} {e['largest_ms_per_image']:.3g} ms/image: {verdict}."]


def build_report_markdown(manifest: dict, root=None) -> str:
    """``report.md`` of a bundle. With ``root`` (the bundle folder) and latency profiles in it, the
    measured member latencies and the chosen committee's modeled latency are shown too."""
    members = manifest["members"]
    c = manifest["cascade"]
    fp32 = [m for m in members if m["precision"] == "fp32"] or members
    largest = max(fp32, key=lambda m: m["macs"])
    dense = manifest.get("task") == "segmentation"
    acc_name, macs_name = ("mIoU", "MACs per frame") if dense else ("acc", "MACs")
    if manifest.get("task") == "video":
        acc_name, macs_name = "top-1", "MACs per clip"
    lines = [
        f"# Build report: {manifest['name']}",
        "",
        f"Built {manifest.get('created', '')} with edge_committee {manifest.get('edge_committee_version', '')}; "
        f"precision mode `{manifest.get('precision_mode', 'fp32')}`. Member outputs computed with ONNX Runtime "
        "on the CPU. Thresholds were chosen on the validation split; test figures are for reporting only.",
        "",
        "## Members",
        "",
        f"| member | precision | {macs_name} (M) | preprocessing (ms/image) | FLOPs (M) | validation {acc_name} (%) "
        f"| test {acc_name} (%) | file |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for m in members:
        acc = m.get("accuracy", {})
        lines.append(
            f"| {m['name']} | {m['precision']} | {_m(m['macs'])} | {_pp_ms(m)} | {_m(m['flops'])} | "
            f"{_pct(acc.get('validation'))} | {_pct(acc.get('test'))} | `{m['file']}` |"
        )
    la = largest.get("accuracy", {})
    cascade_kind = c["kind"] in ("cascade", "learned_cascade")
    thr = ", ".join(f"{t:.4f}" for t in c["thresholds"][: len(c["members"]) - 1]) if cascade_kind else "–"
    mean_macs = c.get("mean_macs")
    test_mean = c.get("test_mean_cost") if str(c.get("cost_unit")).startswith("MACs") else None
    lines += [
        "",
        "## Chosen committee vs the largest single member",
        "",
        (f"Objective `accuracy`: the cheapest committee with validation {acc_name} at least {c['budget']:.4g}"
         if c["objective"] == "accuracy" else
         f"Objective `{c['objective']}` with budget {c['budget']:.4g} {c['cost_unit']}")
        if isinstance(c["budget"], (int, float)) else f"Objective `{c['objective']}` ({c['budget']})",
        "",
        f"| | members | thresholds | validation {acc_name} (%) | test {acc_name} (%) | mean {macs_name} (M) | "
        f"worst-case {macs_name} (M) | exits per stage (validation{', tiles' if dense else ''}) |",
        "|---|---|---|---:|---:|---:|---:|---|",
        f"| chosen {c['kind']} ({c.get('tile_confidence', c['confidence'])}) | {' → '.join(c['members'])} | {thr} | "
        f"{_pct(c['val_accuracy'])} | {_pct(c['test_accuracy'])} | {_m(mean_macs)} | {_m(c['worst_macs'])} | "
        f"{c.get('exit_histogram')} |",
        f"| largest member | {largest['name']} | – | {_pct(la.get('validation'))} | {_pct(la.get('test'))} | "
        f"{_m(largest['macs'])} | {_m(largest['macs'])} | – |",
        "",
    ]
    if mean_macs:
        lines.append(
            f"Mean MACs of the chosen committee: {mean_macs / largest['macs']:.3f} × the largest member's "
            f"on validation" + (f", {test_mean / largest['macs']:.3f} × on test." if test_mean else ".")
            + " This is a ratio of multiply-accumulates, not of time: "
            + ("the measured latencies are below." if manifest.get("profiles") and root is not None else
               "`edge-committee profile` measures latencies on a device, `edge-committee bench` times the "
               "committee end to end.")
        )
    lines += _end_to_end(c)
    if dense:
        tiled = largest.get("tiled_accuracy", {})
        seg = manifest.get("segmentation", {})
        lines.append(
            f"\nThe largest member run on every {seg.get('tile')} tile with a {seg.get('margin')} px margin: "
            f"mIoU {_pct(tiled.get('validation'))} % validation, {_pct(tiled.get('test'))} % test, "
            f"{_m(largest.get('window_macs', 0) * seg.get('tiles_per_frame', 0))} M MACs per frame.")
    if manifest.get("task") == "video":
        views = "; ".join(f"{m['name']} {m['view']['frames']} frames stride {m['view']['stride']} at "
                          f"{m['input_shape'][-2]}x{m['input_shape'][-1]}" for m in members)
        lines.append(f"\nClips of {manifest['video']['clip_frames']} frames; each member's view: {views}.")
    if c.get("cost_unit") == "ms" and c.get("cost_model"):
        cm = c["cost_model"]
        lines.append(
            f"Latency of the chosen committee per call of {cm['batch']} image(s): mean {c['mean_cost']:.4g} ms, "
            f"worst case {c['worst_cost']:.4g} ms ({cm['description']})."
        )
    if root is not None and manifest.get("profiles"):
        lines += _measured_lines(manifest, root, largest["name"])
    if c.get("combiner"):
        comb = c["combiner"]
        lines.append(f"\nLearned combiner: each stage decides on a learned combination of the members so far "
                     f"(per-class weights over log-probabilities, fitted on validation, {comb.get('folds')}-fold "
                     f"cross-fitted figures), stored as {', '.join(f'`{f}`' for f in comb.get('files', []))}.")
    adapted = [m for m in members if m.get("adaptation")]
    for m in adapted:
        r = m["adaptation"]["runs"][-1]
        lines.append(f"\nSelf-trained: `{m['name']}` was fine-tuned on {r['footage']} unlabeled images "
                     f"({len(m['adaptation']['runs'])} run(s)); validation accuracy {_pct(r['val_accuracy_before'])} -> "
                     f"{_pct(r['val_accuracy_after'])}%.")
    if c.get("label_free"):
        lines.append(f"\nLabel-free selection: accuracy means agreement with `{c.get('reference')}`.")
    rejected = manifest.get("rejected_variants") or []
    if rejected:
        lines += ["", "## Rejected precision variants", ""]
        lines += [f"- {r['member']} {r['precision']}: {r['reason']}" for r in rejected]
    if any(m.get("preprocess_cost") for m in members):
        shape = next(m["preprocess_cost"]["source_shape"] for m in members if m.get("preprocess_cost"))
        lines.append(f"\nPreprocessing: measured on {'x'.join(map(str, shape))} validation images on the build "
                     "machine (the CPU executor, exact mode, 1 thread); not part of MACs.")
    lines += ["", "The full trade-off (frontier of single members, ensembles and cascades): "
              "[selection.md](selection.md), ![frontier](selection.png)", ""]
    return "\n".join(lines)


def _measured_lines(manifest: dict, root, largest: str) -> list[str]:
    """Per profile: the members' measured latency at batch 1 and the committee's modeled mean."""
    from pathlib import Path

    from edge_committee.errors import EdgeCommitteeError
    from edge_committee.profile import LatencyModel, read_profile

    c = manifest["cascade"]
    lines = ["", "## Measured latency (latency profiles in the bundle)", ""]
    for name, entry in manifest["profiles"].items():
        try:
            model = LatencyModel.from_profile(read_profile(Path(root) / entry["file"]), "mean_ms")
            per = ", ".join(f"{m} {float(model.members[m](1)):.3g} ms" for m in (*c["members"], largest)
                            if m in model.members)
            hist = c.get("exit_histogram")
            mean = model.mean(c["members"], 1, hist) if hist else None
            alone = model.mean([largest], 1, [1])
        except (EdgeCommitteeError, KeyError, OSError) as exc:
            lines.append(f"- {name}: not readable ({exc})")
            continue
        lines.append(f"- {entry.get('device', name)} (profile `{name}`), batch 1, mean of measured timings: "
                     f"members {per}.")
        if mean is not None:
            lines.append(f"  The chosen committee's modeled mean latency: {mean:.3g} ms vs {alone:.3g} ms for "
                         f"{largest} alone ({alone / mean:.2f}× faster, from these measurements and the "
                         "validation exits; `edge-committee bench` measures it end to end).")
    return lines
