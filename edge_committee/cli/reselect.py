"""``edge-committee select DIR --budget-...``: re-select the cascade from cached outputs."""

from __future__ import annotations

from edge_committee.cli._common import backend_args, budget_args, print_summary, selection_args, to_float
from edge_committee.errors import EdgeCommitteeError

HELP = "re-select the cascade of a bundle from its cached outputs"


def add_arguments(p) -> None:
    p.add_argument("bundle")
    budget_args(p)
    selection_args(p)
    backend_args(p)  # which device profile a latency budget uses


def run(args) -> int:
    from edge_committee.pipeline import reselect

    if args.target_accuracy is not None:
        objective = "accuracy"
        budget = (args.target_accuracy if args.target_accuracy in ("best_single", "largest_tiled")
                  else to_float(args.target_accuracy, "--target-accuracy"))
    else:
        objective = {"worst": "worst_cost", "mean": "mean_cost"}[args.budget_kind]
        if args.budget_ms is not None:
            budget = args.budget_ms
        else:
            budget = args.budget_macs if args.budget_macs == "largest" else to_float(args.budget_macs, "--budget-macs")
    if args.profile and args.budget_ms is None and args.target_accuracy is None:
        raise EdgeCommitteeError("--profile gives latencies in ms; use it with --budget-ms, not --budget-macs")
    if args.batch < 1:
        raise EdgeCommitteeError(f"--batch must be >= 1, got {args.batch}")
    manifest = reselect(args.bundle, objective, budget, profile=args.profile, confidence=args.confidence,
                        max_members=args.max_members, order=args.order, stage_overhead=args.stage_overhead,
                        reference=args.reference, combiner=args.combiner, latency=args.budget_ms is not None,
                        batch=args.batch, backend=args.backend, threads=args.threads, search=args.search,
                        confidence_level=args.confidence_level)
    print_summary(manifest)
    for line in search_lines(manifest.get("cascade") or {}):
        print(line)
    return 0


def search_lines(cascade: dict) -> list[str]:
    """What the search did and what the choice rests on, for the terminal."""
    lines = []
    s = cascade.get("search")
    if s:
        lines.append(f"search {s['mode']}: {s['sequences_scored']:,} of {s['sequences_total']:,} member sequences "
                     f"scored ({s['sequences_pruned']:,} pruned) in {s.get('seconds', 0):.1f} s; {s['bound']}")
    if cascade.get("paired_interval"):
        lo, hi = cascade["paired_interval"]
        va = cascade.get("val_accuracy_interval") or [float("nan")] * 2
        lines.append(f"validation accuracy {100 * cascade['val_accuracy']:.2f}% ({cascade['interval_level']:g} "
                     f"interval {100 * va[0]:.2f}-{100 * va[1]:.2f}%); vs {cascade['paired_reference']} "
                     f"{100 * cascade['paired_difference']:+.2f} points [{100 * lo:+.2f}, {100 * hi:+.2f}]")
    lines += [f"warning: {w}" for w in cascade.get("warnings") or []]
    return lines
