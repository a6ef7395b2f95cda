"""``edge-committee inspect DIR``: what is inside a bundle; verifies every checksum."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edge_committee.cli._common import print_summary

HELP = "show a bundle and verify its checksums (exit 1 on a mismatch)"


def add_arguments(p) -> None:
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run(args) -> int:
    from edge_committee.bundle import read_manifest, verify_files

    manifest = read_manifest(args.bundle, verify=False)
    problems = verify_files(Path(args.bundle), manifest)
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(f"bundle {args.bundle}: {manifest['name']} (schema {manifest['schema_version']}, "
              f"{len(manifest['members'])} members, {len(manifest['files'])} files)")
        print_summary(manifest)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"all {len(manifest['files'])} checksums match")
    return 0
