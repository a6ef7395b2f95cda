"""``edge-committee`` (also ``python -m edge_committee``): one subcommand per stage.

Each subcommand is a module of this package with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> exit code``; :data:`COMMANDS` lists them in ``--help`` order. A user's mistake
(:class:`~edge_committee.errors.EdgeCommitteeError`) prints one line and exits 1; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import re
import signal
import sys
import threading

from edge_committee import __version__
from edge_committee.cli._common import safe_text
from edge_committee.cli._numbers import check_numbers
from edge_committee.errors import EdgeCommitteeError

#: An error line longer than this is cut (a value shown in it may be huge).
MAX_ERROR_CHARS = 2000

#: subcommand name -> module under ``edge_committee.cli``
COMMANDS = {
    "build": "build",
    "compile": "compile",
    "export-onnx": "export_onnx",
    "inspect": "inspect_bundle",
    "predict": "predict",
    "select": "reselect",
    "profile": "profile",
    "bench": "bench",
    "adapt": "adapt",
    "run": "run",
    "export-triton": "export_triton",
    "serve": "serve",
}


def _module(command: str):
    return importlib.import_module(f"edge_committee.cli.{COMMANDS[command]}")


class _Parser(argparse.ArgumentParser):
    """argparse, except that a flag value of the wrong type (``--lr abc``) is a user's mistake like
    any other: one line, exit 1 (argparse's own usage errors keep its exit code 2). A value that
    starts with a minus and a digit (``--source-size -28x28``) is a value, never a flag (argparse
    knows only ``-28`` and ``-2.8``): it reaches the value's own check, one line and exit 1, instead
    of argparse's 'expected one argument' (t3 E2)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d")  # no option of ours looks like one

    def error(self, message: str):
        if re.match(r"argument \S+: invalid (int|float) value", message):
            print(f"error: {safe_text(message, MAX_ERROR_CHARS)}", file=sys.stderr)
            sys.exit(1)
        super().error(message)


#: commands that handle a segmentation bundle (``task: segmentation``); the others refuse it in one line
DENSE_COMMANDS = ("build", "inspect", "run", "export-triton", "bench", "select", "predict", "serve", "export-onnx")
#: why a command does not take a segmentation bundle (the one line it refuses with)
DENSE_REFUSALS = {
    "profile": "a device profile times members per sample for latency budgets and bench's predictions, while a "
               "tile cascade's cost depends on the tiles deferred per frame and it is chosen by MACs per frame; "
               "time it end to end with 'edge-committee bench BUNDLE --source committee.yaml'",
    "compile": "TensorRT engines are built for classification members so far (segmentation members run on frames "
               "and on tile windows of another size); run it with --backend onnxrt or torch-cuda",
    "adapt": "self-training fine-tunes classifier members on pseudo-labels of whole images; it has no per-pixel "
             "version; retrain the members and build again",
}
#: commands that handle a video bundle (``task: video``: clips in, (N, C) outputs like a classifier's)
VIDEO_COMMANDS = ("build", "inspect", "predict", "select", "run", "export-triton", "serve", "bench",
                  "export-onnx")
#: why a command does not take a video bundle (the one line it refuses with)
VIDEO_REFUSALS = {
    "profile": "a device profile times each member per image for latency budgets and bench's cost-model predictions, "
               "while a video member runs on its own view of a clip (its frames at its resolution) and a video "
               "committee is chosen by MACs per clip; time it end to end with 'edge-committee bench BUNDLE' (clips/s, "
               "top-1, MACs per clip next to the largest member)",
    "compile": "TensorRT engines are built for image classification members so far (a video member takes "
               "(N, C, T, H, W) views of a clip); run it with the onnxrt backend",
    "adapt": "self-training fine-tunes image classifier members on pseudo-labels of images; it has no clip version; "
             "retrain the members and build again",
}


def _check_task(args) -> None:
    """Refuse a bundle of another task for a command that does not handle it, in one line saying why."""
    bundle = getattr(args, "bundle", None)
    if not bundle:
        return
    import json
    from pathlib import Path

    path = Path(bundle) / "manifest.json"
    try:
        task = json.loads(path.read_text(encoding="utf-8")).get("task", "classification")
    except (OSError, ValueError, AttributeError, RecursionError):  # RecursionError: JSON nested too deeply
        return  # the command reports an unreadable bundle itself
    if task == "classification" or (task == "segmentation" and args.command in DENSE_COMMANDS):
        return
    if task == "video" and args.command in VIDEO_COMMANDS:
        return
    if task == "video" and args.command in VIDEO_REFUSALS:
        raise EdgeCommitteeError(f"{bundle}: a video bundle; 'edge-committee {args.command}' does not run it: "
                                 f"{VIDEO_REFUSALS[args.command]}")
    if task == "segmentation" and args.command in DENSE_REFUSALS:
        raise EdgeCommitteeError(f"{bundle}: a segmentation bundle; 'edge-committee {args.command}' does not run it: "
                                 f"{DENSE_REFUSALS[args.command]}")
    if task != "classification":
        raise EdgeCommitteeError(
            f"{bundle}: a {task} bundle; 'edge-committee {args.command}' runs classification bundles only so far")


def make_parser() -> argparse.ArgumentParser:
    ap = _Parser(
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every ``with`` block cleans up (staging folders included)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_like_ctrl_c():
    """While the CLI runs, SIGTERM raises :class:`Terminated` (the handler is restored afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    with _sigterm_like_ctrl_c():
        try:
            check_numbers(args.command, args)
            _check_task(args)
            return _module(args.command).run(args)
        except EdgeCommitteeError as exc:
            print(f"error: {safe_text(exc, MAX_ERROR_CHARS)}", file=sys.stderr)
            return 1
        except MemoryError as exc:
            detail = f" ({safe_text(exc, 200)})" if str(exc) else ""
            print(f"error: out of memory{detail}; an input image, a batch or a size in the spec or manifest is "
                  "too large for this machine", file=sys.stderr)
            return 1
        except Terminated:
            print("terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
