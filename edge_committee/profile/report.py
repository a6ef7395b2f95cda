"""Bench results as JSON, Markdown and a plot (measured points over the predicted frontier)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge_committee._lazy import require
from edge_committee._util import atomic_path, write_bytes_atomic

_MARKERS = {"cascade": "*", "largest": "s", "most accurate": "D"}


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _ms(x) -> str:
    return "–" if x is None else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _marker(role: str) -> str:
    return next((m for k, m in _MARKERS.items() if role.startswith(k)), "o")


def prediction_error(row: dict) -> float | None:
    """(predicted - measured) / measured mean latency, or None without a prediction."""
    pred = (row.get("predicted") or {}).get("mean_ms")
    return None if pred is None else (pred - row["mean_ms"]) / row["mean_ms"]


def speedups(doc: dict) -> dict[int, float]:
    """Per batch size: mean latency of the largest member / mean latency of the cascade."""
    out = {}
    for b in sorted({r["batch"] for r in doc["results"]}):
        rows = {r["role"]: r for r in doc["results"] if r["batch"] == b}
        largest = next((r for role, r in rows.items() if "largest" in role), None)
        if largest is not None and "cascade" in rows:
            out[b] = largest["mean_ms"] / rows["cascade"]["mean_ms"]
    return out


def budget_check(doc: dict) -> str | None:
    """One sentence on a worst-case latency budget of the chosen cascade, if it has one."""
    c = doc["cascade"]
    if c.get("cost_unit") != "ms" or c.get("objective") != "worst_cost" or not c.get("cost_model"):
        return None
    b, budget = c["cost_model"]["batch"], float(c["budget"])
    row = next((r for r in doc["results"] if r["batch"] == b and r["role"] == "cascade"), None)
    if row is None:
        return f"Worst-case budget {budget:g} ms at batch {b}: not benched at batch {b}."
    verdict = "met" if row["p90_ms"] <= budget else "**exceeded**"
    return (f"Worst-case budget {budget:g} ms at batch {b}: measured p90 {row['p90_ms']:.3f} ms, "
            f"p99 {row['p99_ms']:.3f} ms: {verdict}.")


def bench_markdown(doc: dict) -> str:
    if doc.get("task") == "segmentation":
        from edge_committee.profile.bench_dense import bench_markdown as dense_markdown

        return dense_markdown(doc)
    if doc.get("task") == "video":
        from edge_committee.profile.bench_video import bench_markdown as video_markdown

        return video_markdown(doc)
    fp = doc.get("fingerprint") or {}
    load = ", ".join(f"{x:.2f}" for x in doc["load_avg"])
    lines = [
        f"# Bench: {doc['bundle']}",
        "",
        (f"Backend `{doc['backend']}`, threads {doc['threads'] or 'default'}, CPU {fp.get('cpu', '?')} "
        f"({fp.get('cores', '?')} cores); load average {load} (1/5/15 min) when the bench ended. "
        f"{doc['images']} images in consecutive full batches, {doc['warmup_batches']} warm-up batches per "
        "contender, then the contenders take turns on the same blocks of consecutive batches (round-robin, "
        "order rotating, a block about 0.25 s of the slowest). Latency: wall time of one "
        "`predict` call in ms."),
        "",
        f"Predicted: the cost model of profile `{doc['profile']}` (mean timings), from the validation exit "
        "histogram as selection costs it (in brackets: from the exits measured here)."
        if doc.get("profile") else "No profile of this device: no predictions (run `edge-committee profile`).",
        "",
        ("| batch | contender | members | accuracy % | images/s | p50 ms | p90 ms | p99 ms | mean ms "
        "| predicted mean ms | error % | exits per stage |"),
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in doc["results"]:
        p, err = r.get("predicted") or {}, prediction_error(r)
        pred = f"{_ms(p['mean_ms'])} ({_ms(p['mean_ms_measured_exits'])})" if p else "–"
        lines.append(
            f"| {r['batch']} | {r['role']} | {' > '.join(r['members'])} | {_pct(r.get('accuracy'))} | "
            f"{r['images_per_s']:,.0f} | {_ms(r['p50_ms'])} | {_ms(r['p90_ms'])} | {_ms(r['p99_ms'])} | "
            f"{_ms(r['mean_ms'])} | {pred} | {'–' if err is None else f'{100 * err:+.1f}'} | "
            f"{r['exit_histogram'] if len(r['members']) > 1 else ''} |"
        )
    ups = speedups(doc)
    if ups:
        lines += ["", "Cascade speed-up over the largest member (mean latency): "
                  + ", ".join(f"{u:.2f}x at batch {b}" for b, u in ups.items()) + "."]
    check = budget_check(doc)
    if check:
        lines += ["", check]
    return "\n".join(lines) + "\n"


def frontier_points(root: str | os.PathLike, manifest: dict, model, batch: int) -> dict[str, list[tuple]]:
    """Predicted Pareto points (mean latency on the test split in ms, accuracy) per candidate kind,
    from the bundle's cached outputs costed by ``model`` (a LatencyModel) at ``batch``."""
    from edge_committee.bundle import load_outputs
    from edge_committee.select import SelectionData, frontier
    from edge_committee.select.report import per_kind_fronts

    arrays = load_outputs(Path(root))
    names = [m["name"] for m in manifest["members"]]
    has_test = all(f"{n}/test" in arrays for n in names)
    data = SelectionData(
        val_logits={n: arrays[f"{n}/validation"] for n in names},
        test_logits={n: arrays[f"{n}/test"] for n in names} if has_test else None,
        costs={n: 1.0 for n in names},
        val_labels=arrays.get("labels/validation"),
        test_labels=arrays.get("labels/test") if has_test else None,
        groups={m["name"]: m.get("base", m["name"]) for m in manifest["members"]},
    ).with_stage_costs(model.stage_costs(names, batch))
    s = manifest.get("selection") or {}
    front = frontier(data, max_len=int(s.get("max_members", 4)), order=s.get("order", "cheapest_first"),
                     confidence=s.get("confidence", "max_prob"), reference=s.get("reference"))
    out = {}
    for kind, cands in per_kind_fronts(front, max_points=150).items():
        pts = front.evaluate(cands)
        out[kind] = [(c.test_mean_cost if c.test_mean_cost is not None else c.mean_cost,
                      c.test_accuracy if c.test_accuracy is not None else c.val_accuracy) for c in pts]
    return out


def bench_plot(doc: dict, curves: dict[int, dict[str, list[tuple]]], path: Path) -> None:
    """Latency vs accuracy per batch size: the predicted frontier (lines), each contender measured
    (filled marker) and predicted (hollow marker, joined by a grey line)."""
    require("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    batches = sorted({r["batch"] for r in doc["results"]})
    fig = Figure(figsize=(5.5 * len(batches), 4.5), dpi=110)
    FigureCanvasAgg(fig)
    for i, b in enumerate(batches):
        ax = fig.add_subplot(1, len(batches), i + 1)
        for kind, pts in (curves.get(b) or {}).items():
            if not pts:
                continue
            x, y = zip(*sorted(pts))
            style = {"single": {"ls": "none", "marker": "o", "mfc": "none"},
                     "ensemble": {"ls": ":", "alpha": 0.6}, "cascade": {"ls": "-"}}[kind]
            ax.plot(x, [100 * v for v in y], label=f"predicted {kind}s", lw=1.0, **style)
        for r in (r for r in doc["results"] if r["batch"] == b and r.get("accuracy") is not None):
            y = 100 * r["accuracy"]
            dot = ax.scatter([r["mean_ms"]], [y], marker=_marker(r["role"]), s=120, edgecolor="black", zorder=5,
                             label=f"measured: {r['role']} ({' > '.join(r['members'])})")
            pred = (r.get("predicted") or {}).get("mean_ms")
            if pred is not None:  # the same contender as predicted: hollow, joined to the measurement
                ax.scatter([pred], [y], marker=_marker(r["role"]), s=120, facecolor="none",
                           edgecolor=dot.get_facecolor()[0], zorder=4)
                ax.plot([pred, r["mean_ms"]], [y, y], color="gray", lw=0.8, zorder=3)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log axis overlap
        ax.set_xlabel(f"mean latency per call of {b} image{'s' if b > 1 else ''} (ms, log)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"batch {b}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _is_bench_json(path: Path) -> bool:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return isinstance(doc, dict) and str(doc.get("schema", "")).startswith("edge_committee.bench/")


def check_bench_out(out_dir: str | os.PathLike, force: bool = False, stem: str = "bench") -> Path:
    """Refuse a ``--out`` that is not a folder, or whose bench files are not an earlier bench (without ``force``)."""
    from edge_committee._util import check_output_file, refuse_unsafe_target
    from edge_committee.errors import OutputError

    out = Path(out_dir)
    if os.path.lexists(out) and not out.is_dir():  # a link to a folder is fine: the files in it are checked
        refuse_unsafe_target(out)
        raise OutputError(f"--out {out} is a file; bench writes a folder ({stem}.json, {stem}.md, "
                          f"{stem}.png): choose a folder name")
    ours = out / f"{stem}.json"
    earlier = ours.is_file() and not ours.is_symlink() and _safe_is_bench(ours)
    for name in (f"{stem}.json", f"{stem}.md", f"{stem}.png"):
        check_output_file(out / name, force=force or earlier, flag="--out")
    return out


def _safe_is_bench(path: Path) -> bool:
    try:
        return _is_bench_json(path)
    except (OSError, ValueError):
        return False


def write_bench(doc: dict, out_dir: str | os.PathLike, curves: dict | None = None, stem: str = "bench",
                force: bool = False) -> dict:
    """Write ``<stem>.json``, ``<stem>.md`` and (with ``curves``) ``<stem>.png`` atomically.

    Files of an earlier bench in ``out_dir`` are replaced; any other file of those names only
    with ``force`` (see :func:`check_bench_out`).
    """
    out = check_bench_out(out_dir, force, stem)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    write_bytes_atomic(paths["json"], (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    text = bench_markdown(doc)
    if curves is not None:
        paths["png"] = out / f"{stem}.png"
        bench_plot(doc, curves, paths["png"])
        text += f"\n![latency vs accuracy]({paths['png'].name})\n"
    write_bytes_atomic(paths["md"], text.encode("utf-8"))
    return paths
