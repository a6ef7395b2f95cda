"""``edge-committee`` (also ``python -m edge_committee``): one subcommand per stage.

A user's mistake (:class:`~edge_committee.errors.EdgeCommitteeError`) prints one line and exits
1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge_committee import __version__
from edge_committee.errors import EdgeCommitteeError

CONFIDENCES = ("max_prob", "margin", "neg_entropy")


def _budget_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("budget")
    x = g.add_mutually_exclusive_group(required=True)
    x.add_argument("--budget-macs", help="cost budget in MACs (a number, or 'largest': the largest member's)")
    x.add_argument("--budget-ms", type=float, help="latency budget in ms (needs --profile)")
    x.add_argument("--target-accuracy",
                   help="cheapest committee with at least this validation accuracy (0..1 or 'best_single')")
    g.add_argument("--budget-kind", choices=("worst", "mean"), default="worst",
                   help="the budget bounds the worst case (default) or the mean cost")
    g.add_argument("--profile", help="latency profile JSON {\"unit\": \"ms\", \"members\": {name: ms}}")


def _selection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selection")
    g.add_argument("--confidence", choices=CONFIDENCES, help="confidence function (default: the bundle's)")
    g.add_argument("--max-members", type=int, help="most members in a cascade or ensemble")
    g.add_argument("--order", choices=("cheapest_first", "any"), help="member order in cascades")
    g.add_argument("--stage-overhead", type=float, help="gate cost per executed stage, in the cost unit")
    g.add_argument("--reference", help="label-free selection: 'ensemble' or a member name")


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="edge-committee",
        description="Compile, select and run committees (cascades) of image classifiers.",
    )
    ap.add_argument("--version", action="version", version=f"edge_committee {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", parents=[common], help="build a bundle from a committee spec (YAML)")
    b.add_argument("config", help="the committee spec (YAML)")
    b.add_argument("--out", required=True, help="the bundle folder to write")
    b.add_argument("--precision", choices=("fp32", "fp16", "int8", "auto"),
                   help="member precision (default: the spec's, else fp32)")
    g = b.add_argument_group("evaluation")
    g.add_argument("--threads", type=int, help="ONNX Runtime threads")
    g.add_argument("--cache-dir", help="member output cache (default ~/.cache/edge_committee)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the output cache")

    i = sub.add_parser("inspect", parents=[common], help="show a bundle and verify its checksums (exit 1 on a mismatch)")
    i.add_argument("bundle")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")

    p = sub.add_parser("predict", parents=[common], help="classify image files or an .npy batch with a bundle")
    p.add_argument("bundle")
    p.add_argument("inputs", nargs="+", help="image files, or .npy arrays of uint8 images (N, H, W[, C])")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads")
    p.add_argument("--json", action="store_true", help="one JSON object per input")

    s = sub.add_parser("select", parents=[common], help="re-select the cascade of a bundle from its cached outputs")
    s.add_argument("bundle")
    _budget_args(s)
    _selection_args(s)
    return ap


# ------------------------------------------------------------------------------ commands
def cmd_build(args) -> int:
    from edge_committee.pipeline import build

    manifest = build(args.config, args.out, precision=args.precision, cache_dir=args.cache_dir,
                     use_cache=not args.no_cache, threads=args.threads,
                     log=None if args.quiet else lambda s: print(s, flush=True))
    _print_summary(manifest)
    return 0


def _print_summary(manifest: dict) -> None:
    from edge_committee.bundle.report import build_report_markdown

    text = build_report_markdown(manifest)
    start = text.index("## Members")
    end = text.index("The full trade-off")
    print(text[start:end].rstrip())


def cmd_inspect(args) -> int:
    from edge_committee.bundle import read_manifest, verify_files

    manifest = read_manifest(args.bundle, verify=False)
    problems = verify_files(Path(args.bundle), manifest)
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(f"bundle {args.bundle}: {manifest['name']} (schema {manifest['schema_version']}, "
              f"{len(manifest['members'])} members, {len(manifest['files'])} files)")
        _print_summary(manifest)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"all {len(manifest['files'])} checksums match")
    return 0


def _read_inputs(paths: list[str]):
    import numpy as np

    from edge_committee.data.readers import read_image

    items: list[tuple[str, np.ndarray]] = []
    for p in paths:
        if p.endswith(".npy"):
            try:
                arr = np.load(p, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise EdgeCommitteeError(f"cannot read {p}: {exc}") from None
            if arr.dtype != np.uint8 or arr.ndim not in (3, 4):
                raise EdgeCommitteeError(
                    f"{p}: expected uint8 images of shape (N, H, W) or (N, H, W, C); got {arr.dtype} {arr.shape}"
                )
            items += [(f"{p}[{i}]", arr[i]) for i in range(len(arr))]
        else:
            items.append((p, read_image(p)))
    return items


def cmd_predict(args) -> int:
    from edge_committee.api import load

    items = _read_inputs(args.inputs)
    with load(args.bundle, threads=args.threads) as model:
        pred = model.predict([im for _, im in items])
    names = pred.names()
    for j, (src, _) in enumerate(items):
        row = {"input": src, "label": names[j], "class": int(pred.labels[j]),
               "confidence": round(float(pred.confidence[j]), 6), "exit_stage": int(pred.exit_stage[j]),
               "exit_member": model.members[pred.exit_stage[j]]}
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{src}\t{row['label']}\tconfidence {row['confidence']:.4f}\t"
                  f"exit stage {row['exit_stage']} ({row['exit_member']})")
    return 0


def cmd_select(args) -> int:
    from edge_committee.pipeline import reselect

    if args.target_accuracy is not None:
        objective = "accuracy"
        budget = args.target_accuracy if args.target_accuracy == "best_single" else _float(args.target_accuracy, "--target-accuracy")
    else:
        objective = {"worst": "worst_cost", "mean": "mean_cost"}[args.budget_kind]
        if args.budget_ms is not None:
            if not args.profile:
                raise EdgeCommitteeError("--budget-ms needs --profile FILE with measured latencies per member")
            budget = args.budget_ms
        else:
            budget = args.budget_macs if args.budget_macs == "largest" else _float(args.budget_macs, "--budget-macs")
    if args.profile and args.budget_ms is None and args.target_accuracy is None:
        raise EdgeCommitteeError("--profile gives latencies in ms; use it with --budget-ms, not --budget-macs")
    manifest = reselect(args.bundle, objective, budget, profile=args.profile, confidence=args.confidence,
                        max_members=args.max_members, order=args.order, stage_overhead=args.stage_overhead,
                        reference=args.reference)
    _print_summary(manifest)
    return 0


def _float(value: str, flag: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise EdgeCommitteeError(f"{flag}: {value!r} is not a number") from None


COMMANDS = {"build": cmd_build, "inspect": cmd_inspect, "predict": cmd_predict, "select": cmd_select}


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        return COMMANDS[args.command](args)
    except EdgeCommitteeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
