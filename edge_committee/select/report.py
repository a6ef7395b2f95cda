"""The selection report: the frontier as a PNG, a Markdown table and JSON.

:func:`write_report` writes ``<stem>.png``, ``<stem>.md`` and ``<stem>.json`` into ``out_dir``,
each first under a temporary name in the same folder and then moved into place with
``os.replace`` (a reader never sees a half-written file). The plot and the tables show
validation figures (what selection used) and test accuracy where test labels exist. Frontiers
with many points are thinned for the table and the JSON (see :func:`thin`). Every candidate the
report lists carries its exact validation-accuracy interval and its paired difference to the
reference member (:mod:`.intervals`); the plot draws the intervals of the table's candidates as
error bars.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from edge_committee._lazy import require
from edge_committee._util import atomic_path
from edge_committee.select.frontier import CASCADE_KINDS, Candidate, Frontier
from edge_committee.select.objective import SelectionResult, finite_threshold

SCHEMA = "edge_committee.selection/1"
_MARKERS = {"single": "o", "ensemble": "s", "cascade": "^", "learned_ensemble": "D", "learned_cascade": "v"}
_COLORS = {"single": "tab:blue", "ensemble": "tab:orange", "cascade": "tab:green", "learned_ensemble": "tab:brown",
           "learned_cascade": "tab:purple"}


def thin(front: Sequence[Candidate], max_points: int, keep: Sequence[Candidate] = ()) -> list[Candidate]:
    """At most about ``max_points`` of a cheapest-first frontier, evenly spread in accuracy.

    The first and last points and any in ``keep`` (compared by identity of figures) are kept.
    """
    if len(front) <= max_points:
        return list(front)
    lo, hi = front[0].val_accuracy, front[-1].val_accuracy
    step = (hi - lo) / max(max_points - 1, 1)
    kept_keys = {_key(c) for c in keep}
    out = [front[0]]
    for c in front[1:-1]:
        if c.val_accuracy >= out[-1].val_accuracy + step or _key(c) in kept_keys:
            out.append(c)
    out.append(front[-1])
    return out


def _key(c: Candidate) -> tuple:
    return (c.kind, c.members, c.thresholds)


def candidate_dict(c: Candidate) -> dict:
    """JSON-ready figures of one candidate (+-inf thresholds as +-NEVER_EXIT)."""
    return {
        "kind": c.kind,
        "members": list(c.members),
        "thresholds": [finite_threshold(t) for t in c.thresholds],
        "val_accuracy": c.val_accuracy,
        "test_accuracy": c.test_accuracy,
        "mean_cost": c.mean_cost,
        "worst_cost": c.worst_cost,
        "test_mean_cost": c.test_mean_cost,
        "exit_histogram": list(c.val_exit_histogram) if c.val_exit_histogram else None,
        "search_eps_accuracy": c.eps_accuracy,
        "val_accuracy_interval": list(c.val_interval) if c.val_interval else None,
        "paired_difference": c.paired.difference if c.paired else None,
        "paired_interval": [c.paired.low, c.paired.high] if c.paired else None,
    }


@contextlib.contextmanager
def _atomic(path: Path, mode: str = "w") -> Iterator:
    with atomic_path(path) as tmp, open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
        yield f


def _fmt_cost(x: float | None, unit: str) -> str:
    if x is None:
        return "-"
    if unit == "MACs":
        return f"{x / 1e6:,.1f} M"
    return f"{x:.4g}"


def _fmt_budget(b: float | str, unit: str) -> str:
    if isinstance(b, str):
        return b
    return f"{b / 1e6:,.1f} M MACs" if unit == "MACs" else f"{b:g} {unit}"


def _fmt_acc(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _fmt_thr(c: Candidate) -> str:
    if c.kind not in CASCADE_KINDS:
        return ""
    return ", ".join("never" if t == math.inf else "always" if t == -math.inf else f"{t:.4f}" for t in c.thresholds)


def _fmt_interval(c: Candidate) -> str:
    if c.val_interval is None or c.paired is None:
        return " | "
    lo, hi = c.val_interval
    p = c.paired
    return (f" {100 * lo:.2f}-{100 * hi:.2f} | {100 * p.difference:+.2f} "
            f"[{100 * p.low:+.2f}, {100 * p.high:+.2f}] |")


def markdown_table(rows: Sequence[Candidate], unit: str, metric: str) -> str:
    """A Markdown table of candidates (costs in M for MACs, else in ``unit``); with intervals
    (:meth:`.frontier.Frontier.with_intervals`) two more columns: the validation interval and the
    paired difference against the reference member with its interval."""
    cu = "MMACs" if unit == "MACs" else unit
    paired = next((c.paired for c in rows if c.paired is not None), None)
    extra, sep = "", ""
    if paired is not None:
        extra = f" val {paired.level:g} interval % | vs {paired.reference} (points) |"
        sep = "---:|---:|"
    head = (
        f"| kind | committee | thresholds | val {metric} % |{extra} test acc % | mean cost ({cu}) "
        f"| worst cost ({cu}) |\n|---|---|---|---:|{sep}---:|---:|---:|\n"
    )
    lines = [
        f"| {c.kind} | {c.label} | {_fmt_thr(c)} | {_fmt_acc(c.val_accuracy)} |"
        f"{_fmt_interval(c) if paired is not None else ''} "
        f"{_fmt_acc(c.test_accuracy)} | {_fmt_cost(c.mean_cost, unit).replace(' M', '')} | "
        f"{_fmt_cost(c.worst_cost, unit).replace(' M', '')} |"
        for c in rows
    ]
    return head + "\n".join(lines) + "\n"


def plot_frontier(
    front: Frontier,
    path: Path,
    chosen: Candidate | None = None,
    title: str = "",
    test: bool = False,
    curves: dict[str, Sequence[Candidate]] | None = None,
    intervals: Sequence[Candidate] = (),
) -> None:
    """Accuracy vs mean cost (log x) of singles, ensembles and cascades; ``chosen`` starred.

    ``test=True`` plots test accuracy (candidates must have been evaluated) instead of validation.
    ``intervals``: candidates with :attr:`~.frontier.Candidate.val_interval` drawn as error bars
    (validation plots only).
    """
    require("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = curves if curves is not None else per_kind_fronts(front)
    if test:
        acc = lambda c: c.test_accuracy
        cost = lambda c: c.mean_cost if c.test_mean_cost is None else c.test_mean_cost
    else:
        acc = lambda c: c.val_accuracy
        cost = lambda c: c.mean_cost
    fig = Figure(figsize=(7.5, 5.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if front.ensembles and not test:
        ax.scatter([e.cost for e in front.ensembles], [100 * e.accuracy for e in front.ensembles],
                   s=8, marker="s", color=_COLORS["ensemble"], alpha=0.25, label="_all ensembles")
    for kind, pts in curves.items():
        pts = sorted((c for c in pts if acc(c) is not None), key=cost)
        if not pts:
            continue
        x = [cost(c) for c in pts]
        y = [100 * acc(c) for c in pts]
        if kind == "single":
            ax.scatter(x, y, marker="o", color=_COLORS[kind], zorder=3, label="single models")
            _annotate_singles(ax, front, pts, x, y)
        else:
            if test:
                ax.plot(x, y, color=_COLORS[kind], lw=1.0, zorder=2)
            else:
                ax.step(x, y, where="post", color=_COLORS[kind], lw=1.2, zorder=2)
            ax.scatter(x, y, marker=_MARKERS[kind], s=14, color=_COLORS[kind], zorder=2,
                       label=f"{kind.replace('_', ' ')}s (validation Pareto)")
    bars = [c for c in intervals if c.val_interval is not None] if not test else []
    if bars:
        lo = [100 * (c.val_accuracy - c.val_interval[0]) for c in bars]
        hi = [100 * (c.val_interval[1] - c.val_accuracy) for c in bars]
        level = next((c.paired.level for c in bars if c.paired is not None), None)
        ax.errorbar([c.mean_cost for c in bars], [100 * c.val_accuracy for c in bars], yerr=[lo, hi], fmt="none",
                    ecolor="gray", elinewidth=0.8, capsize=2, alpha=0.7, zorder=1,
                    label=f"{level:g} intervals (exact binomial)" if level else "intervals")
    if chosen is not None and acc(chosen) is not None:
        ax.scatter([cost(chosen)], [100 * acc(chosen)], marker="*", s=260, color="red",
                   edgecolor="black", zorder=5, label=f"chosen: {chosen.label}")
    ax.set_xscale("log")
    unit = front.cost_unit
    ax.set_xlabel(f"{cost_axis(front)} ({unit}, log scale)")
    metric = "test accuracy" if test else f"validation {front.accuracy_metric}"
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(title or "accuracy vs mean cost", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with _atomic(path, "wb") as f:
        fig.savefig(f, format="png")


def _annotate_singles(ax, front: Frontier, pts: Sequence[Candidate], x: list, y: list) -> None:
    """Name each single member; members of one group at one cost (a model at several precisions)
    get one label, ``<group> x<count>``, at the highest of them, instead of overprinted names."""
    at: dict[tuple, list] = {}
    for c, xi, yi in zip(pts, x, y):
        at.setdefault((front.data.group_of(c.members[0]), xi), []).append((yi, c.members[0]))
    for (group, xi), items in at.items():
        text = items[0][1] if len(items) == 1 else f"{group} x{len(items)}"
        ax.annotate(text, (xi, max(yi for yi, _ in items)), textcoords="offset points", xytext=(4, -10), fontsize=7)


def cost_axis(front: Frontier) -> str:
    """What a candidate's mean cost is: per image, or per batch for a batch-aware latency model."""
    sc = front.data.stage_costs
    if sc is None:
        return "mean cost per image"
    return f"mean latency per batch of {sc.batch}" if sc.batch > 1 else "mean latency per image (batch 1)"


def per_kind_fronts(front: Frontier, max_points: int = 400) -> dict[str, list[Candidate]]:
    """Singles (all, by cost), and the Pareto sets of ensembles and of cascades (thinned)."""
    singles = sorted((front.candidate("single", i) for i in range(len(front.singles))),
                     key=lambda c: c.mean_cost)
    out = {
        "single": singles,
        "ensemble": thin(front.pareto(["ensemble"]), max_points),
        "cascade": thin(front.pareto(["cascade"]), max_points),
    }
    for kind in ("learned_ensemble", "learned_cascade"):
        if getattr(front, f"{kind}s"):
            out[kind] = thin(front.pareto([kind]), max_points)
    return out


def write_report(result: SelectionResult, out_dir: str | os.PathLike, stem: str = "selection") -> dict[str, Path]:
    """Write ``<stem>.png``, ``<stem>.md`` and ``<stem>.json`` atomically; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    front, chosen = result.frontier, result.chosen
    level = result.interval_level
    table = front.with_intervals(front.evaluate(thin(front.pareto(), 40, keep=[chosen])), level)
    full = front.with_intervals(front.evaluate(thin(front.pareto(), 200, keep=[chosen])), level)
    curves = {k: front.with_intervals(front.evaluate(v), level) for k, v in per_kind_fronts(front).items()}
    paths = {"png": out / f"{stem}.png", "md": out / f"{stem}.md", "json": out / f"{stem}.json"}
    title = f"{result.objective} budget {_fmt_budget(result.budget, front.cost_unit)}: {chosen.label}"
    if result.objective == "accuracy":
        title = f"accuracy >= {_fmt_acc(result.target_accuracy)}%: {chosen.label}"
    plot_frontier(front, paths["png"], chosen, title, curves=curves, intervals=[*table, *curves["single"]])
    with _atomic(paths["md"]) as f:
        f.write(_markdown(result, table, curves["single"], paths["png"].name))
    doc = {
        "schema": SCHEMA,
        "chosen": result.to_dict(),
        "frontier": [candidate_dict(c) for c in full],
        "frontier_with_intervals": [candidate_dict(c) for c in table],
        "search": front.search.to_dict(timing=True) if front.search is not None else None,
        "frontier_points_total": len(front.pareto()),
        "singles": [candidate_dict(c) for c in curves["single"]],
        "ensembles": [candidate_dict(c) for c in curves["ensemble"]],
        "cascades": [candidate_dict(c) for c in curves["cascade"]],
    }
    for kind in ("learned_ensemble", "learned_cascade"):
        if kind in curves:
            doc[f"{kind}s"] = [candidate_dict(c) for c in curves[kind]]
    with _atomic(paths["json"]) as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")
    return paths


def _learned_lines(front: Frontier) -> list[str]:
    """The learned candidates' line, and plain vs learned at the top of each frontier."""
    if front.combiner is None:
        return []
    cfg = front.combiner
    lines = [f"- learned combiner: {len(front.learned_ensembles)} learned ensembles and "
             f"{len(front.learned_cascades)} learned cascades, per-class weights over log-probabilities, "
             f"fitted on validation with {cfg.folds}-fold cross-fitting (validation figures are "
             f"out-of-fold; test figures use the fit on all of validation)"]
    for plain, learned in (("ensemble", "learned_ensemble"), ("cascade", "learned_cascade")):
        best = [max(front.pareto([k]), key=lambda c: c.val_accuracy, default=None) for k in (plain, learned)]
        if None not in best:
            a, b = front.evaluate(best)
            lines.append(f"- most accurate {plain}: average {a.label} {_fmt_acc(a.val_accuracy)}% "
                         f"(test {_fmt_acc(a.test_accuracy)}%) vs learned {b.label} {_fmt_acc(b.val_accuracy)}% "
                         f"(test {_fmt_acc(b.test_accuracy)}%)")
    return lines


def _markdown(result: SelectionResult, table: list[Candidate], singles: list[Candidate], png: str) -> str:
    front, c = result.frontier, result.chosen
    unit = front.cost_unit
    metric = front.accuracy_metric
    mode = (
        f"label-free: validation figures are the {metric} (no validation labels)"
        if front.label_free
        else "validation labels"
    )
    target = f" (target {100 * result.target_accuracy:.2f}%)" if result.target_accuracy is not None else ""
    lines = [
        "# Committee selection",
        "",
        f"- objective: **{result.objective}**, budget **{_fmt_budget(result.budget, unit)}**"
        + (target if result.objective == "accuracy" else ""),
        f"- chosen: **{c.kind} {c.label}**, thresholds [{_fmt_thr(c)}], confidence `{front.confidence}`",
        f"- validation {metric}: {_fmt_acc(c.val_accuracy)}%, test accuracy: {_fmt_acc(c.test_accuracy)}%",
        f"- mean cost: {_fmt_cost(c.mean_cost, unit)} {unit}, worst case: {_fmt_cost(c.worst_cost, unit)} {unit}",
        f"- exits per stage (validation): {list(c.val_exit_histogram or ())}",
        *_cost_model_lines(front),
        f"- selection on {front.num_val} validation samples ({mode}); {front.num_test} test samples",
        (f"- candidates: {len(front.singles)} single, {len(front.ensembles)} ensembles, "
        f"{len(front.cascades)} cascades (order {front.order}, up to {front.max_len} members, "
        f"stage overhead {front.stage_overhead:g} {unit})"),
        *_learned_lines(front),
        (f"- threshold search: exact up to {100 * front.eps_accuracy:.2f} accuracy points at no higher "
        "mean cost (0 = exact)"),
        *_search_lines(result),
        "",
        f"![frontier]({png})",
        "",
        "## Pareto frontier (all kinds, validation)",
        "",
        markdown_table(table, unit, metric),
        "## Single models",
        "",
        markdown_table(singles, unit, metric),
    ]
    return "\n".join(lines)


def _search_lines(result: SelectionResult) -> list[str]:
    """The member-sequence search, the intervals and any small-validation warning."""
    front, c = result.frontier, result.chosen
    lines = []
    if front.search is not None:
        s = front.search
        lines.append(f"- member-sequence search `{s.mode}`: {s.sequences_scored:,} of {s.sequences_total:,} "
                     f"sequences scored ({s.sequences_pruned:,} pruned) in {s.seconds:.1f} s; {s.bound}")
    if c.paired is not None and c.val_interval is not None:
        p = c.paired
        lines.append(f"- intervals: exact (Clopper-Pearson) at level {p.level:g}: validation accuracy "
                     f"{100 * c.val_interval[0]:.2f}-{100 * c.val_interval[1]:.2f}%; vs {p.reference} (paired on "
                     f"the same samples) {100 * p.difference:+.2f} points [{100 * p.low:+.2f}, {100 * p.high:+.2f}]")
    if result.confidence_level is not None and result.objective == "accuracy":
        lines.append(f"- the target had to be met by the lower end of the {result.confidence_level:g} interval")
    lines += [f"- **warning**: {w}" for w in result.warnings]
    return lines


def _cost_model_lines(front: Frontier) -> list[str]:
    sc = front.data.stage_costs
    if sc is None:
        return []
    return [
        f"- costs: {cost_axis(front)} in {front.cost_unit} from {sc.description or 'a latency model'}; "
        f"worst case = every stage on the whole batch; runtime overhead {sc.per_call:.4g} {front.cost_unit} "
        "per call included"
    ]
