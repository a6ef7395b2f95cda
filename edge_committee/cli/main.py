"""``edge-committee`` (also ``python -m edge_committee``): one subcommand per stage.

Each subcommand is a module of this package with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> exit code``; :data:`COMMANDS` lists them in ``--help`` order. A user's mistake
(:class:`~edge_committee.errors.EdgeCommitteeError`) prints one line and exits 1; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edge_committee import __version__
from edge_committee.errors import EdgeCommitteeError

#: subcommand name -> module under ``edge_committee.cli``
COMMANDS = {
    "build": "build",
    "inspect": "inspect_bundle",
    "predict": "predict",
    "select": "reselect",
    "profile": "profile",
    "bench": "bench",
}


def _module(command: str):
    return importlib.import_module(f"edge_committee.cli.{COMMANDS[command]}")


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="edge-committee",
        description="Compile, select and run committees (cascades) of image classifiers.",
    )
    ap.add_argument("--version", action="version", version=f"edge_committee {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        mod = _module(name)
        mod.add_arguments(sub.add_parser(name, parents=[common], help=mod.HELP, description=mod.HELP))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        return _module(args.command).run(args)
    except EdgeCommitteeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
