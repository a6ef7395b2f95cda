"""``edge-committee build CONFIG --out DIR``: spec -> bundle."""

from __future__ import annotations

from edge_committee.cli._common import print_summary, safe_text

HELP = "build a bundle from a committee spec (YAML)"


def add_arguments(p) -> None:
    p.add_argument("config", help="the committee spec (YAML)")
    p.add_argument("--out", required=True, help="the bundle folder to write (an existing bundle is replaced)")
    p.add_argument("--force", action="store_true",
                   help="replace --out even if it is not an edge_committee bundle (its files are deleted)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "auto"),
                   help="member precision (default: the spec's, else fp32)")
    g = p.add_argument_group("evaluation")
    g.add_argument("--threads", type=int, help="ONNX Runtime threads")
    g.add_argument("--cache-dir", help="member output cache (default ~/.cache/edge_committee)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the output cache")


def run(args) -> int:
    from edge_committee.pipeline import build

    manifest = build(args.config, args.out, precision=args.precision, cache_dir=args.cache_dir,
                     use_cache=not args.no_cache, threads=args.threads,
                     log=None if args.quiet else lambda s: print(safe_text(s), flush=True), force=args.force)
    print_summary(manifest)
    from edge_committee.cli.reselect import search_lines

    for line in search_lines(manifest.get("cascade") or {}):  # the search, the intervals, any warning
        print(safe_text(line))
    return 0
