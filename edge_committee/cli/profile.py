"""``edge-committee profile DIR``: time the members and the runtime on this device, into the bundle."""

from __future__ import annotations

from edge_committee.cli._common import backend_args

HELP = "measure member and runtime latencies on this device and store the profile in the bundle"


def add_arguments(p) -> None:
    p.add_argument("bundle")
    p.add_argument("--batch", default="1,8,64", help="batch sizes to time, comma-separated (default 1,8,64)")
    p.add_argument("--members", help="comma-separated member names (default: every member variant)")
    p.add_argument("--source", help="raw images to time preprocessing on: .npy/.npz/image folder "
                                    "(default: random images of the size the bundle records)")
    p.add_argument("--dry-run", action="store_true", help="print the profile instead of writing it")
    backend_args(p)
    g = p.add_argument_group("timing (trtexec's method: warm up, then until the two halves' medians agree)")
    g.add_argument("--warmup", type=float, default=0.1, help="warm-up seconds per timing (default 0.1)")
    g.add_argument("--min-iters", type=int, default=10, help="fewest timed calls (default 10)")
    g.add_argument("--min-time", type=float, default=0.2, help="fewest timed seconds (default 0.2)")
    g.add_argument("--max-time", type=float, default=2.0, help="most timed seconds per timing (default 2)")
    g.add_argument("--tolerance", type=float, default=0.05,
                   help="relative difference of the halves' medians called stable (default 0.05)")


def summary(doc: dict) -> str:
    """A Markdown table: median ms (p90) per batch size of each member's inference, of one runtime
    call with it alone, and of the runtime's parts timed apart."""
    batches = [str(b) for b in doc["batch_sizes"]]
    head = "| timing | " + " | ".join(f"b{b} median ms (p90)" for b in batches) + " |"
    lines = [f"profile {doc['name']} ({doc['duration_s']:.1f} s)", "", head,
             "|---|" + "---:|" * len(batches)]

    def row(name: str, table: dict) -> str:
        cells = [f"{table[b]['median_ms']:.4g} ({table[b]['p90_ms']:.3g})" + ("" if table[b].get("stable", True)
                 else " *") for b in batches]
        return f"| {name} | " + " | ".join(cells) + " |"

    for n, m in doc["members"].items():
        lines += [row(f"{n}: inference", m["batches"]), row(f"{n}: one runtime call", m["stage"])]
    ov = doc["overhead"]
    lines += [row(f"apart: {k}", ov[k]) for k in ("call", "gather", "gate")]
    lines += [row(f"apart: preprocess {n}", t) for n, t in ov["preprocess"].items()]
    if any(not t.get("stable", True) for m in doc["members"].values() for t in m["batches"].values()):
        lines.append("\n* not stable within --max-time (the machine's load varied); figures are still medians")
    return "\n".join(lines)


def run(args) -> int:
    import json

    from edge_committee.cli.bench import read_source
    from edge_committee.profile import (
        TimingConfig,
        parse_batches,
        profile_bundle,
        write_profile,
    )

    timing = TimingConfig(warmup_s=args.warmup, min_iters=args.min_iters, min_time_s=args.min_time,
                          max_time_s=args.max_time, tolerance=args.tolerance)
    images = read_source(args.source, None).images if args.source else None
    members = [m.strip() for m in args.members.split(",")] if args.members else None
    doc = profile_bundle(args.bundle, args.backend, parse_batches(args.batch), args.threads, members=members,
                         images=images, timing=timing, show_progress=not args.quiet)
    if args.dry_run:
        print(json.dumps(doc, indent=1))
        return 0
    path = write_profile(args.bundle, doc)
    print(summary(doc))
    print(f"\nwritten to {path}")
    return 0
