"""``edge-committee inspect DIR``: what is inside a bundle; verifies every checksum."""

from __future__ import annotations

import sys
from pathlib import Path

from edge_committee.cli._common import dumps_strict, print_summary, safe_text

HELP = "show a bundle and verify its checksums (exit 1 on a mismatch)"


def add_arguments(p) -> None:
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the manifest as (strict) JSON")


def run(args) -> int:
    from edge_committee.bundle import DIGEST_KEY, read_manifest, verify_files

    manifest = read_manifest(args.bundle, verify=False)  # schema and paths only: nothing outside is read
    problems = verify_files(Path(args.bundle), manifest)
    if args.json:
        print(dumps_strict(manifest, indent=2))
    else:
        print(safe_text(f"bundle {args.bundle}: {manifest['name']} (schema {manifest['schema_version']}, "
                        f"{len(manifest['members'])} members, {len(manifest['files'])} files)"))
        print_summary(manifest)
    for p in problems:
        print(f"error: {safe_text(p)}", file=sys.stderr)
    if problems:
        return 1
    print(f"all {len(manifest['files'])} checksums match, and the manifest's own "
          f"({DIGEST_KEY} {manifest[DIGEST_KEY]})", file=sys.stderr if args.json else sys.stdout)
    return 0
