"""Argument groups and helpers that several subcommands share (Polygraphy ``tools/args`` style)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from edge_committee.errors import EdgeCommitteeError

CONFIDENCES = ("max_prob", "margin", "neg_entropy")


def budget_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("budget")
    x = g.add_mutually_exclusive_group(required=True)
    x.add_argument("--budget-macs", help="cost budget in MACs (a number, or 'largest': the largest member's)")
    x.add_argument("--budget-ms", type=float,
                   help="latency budget in ms of one call on --batch images (this device's profile in the "
                        "bundle, from 'edge-committee profile', or --profile)")
    x.add_argument("--target-accuracy",
                   help="cheapest committee with at least this validation accuracy (0..1 or 'best_single'; "
                        "segmentation: a mIoU, or 'largest_tiled')")
    g.add_argument("--budget-kind", choices=("worst", "mean"), default="worst",
                   help="the budget bounds the worst case (default) or the mean cost")
    g.add_argument("--profile", help="a profile in the bundle (by name) or a profile file; also an older "
                                     "JSON {\"unit\": \"ms\", \"members\": {name: ms}}")
    g.add_argument("--batch", type=int, default=1,
                   help="the batch size a latency budget refers to (default 1)")


def selection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selection")
    g.add_argument("--confidence", choices=CONFIDENCES, help="confidence function (default: the bundle's)")
    g.add_argument("--max-members", type=int, help="most members in a cascade or ensemble")
    g.add_argument("--order", choices=("cheapest_first", "any"), help="member order in cascades")
    g.add_argument("--stage-overhead", type=float, help="gate cost per executed stage, in the cost unit")
    g.add_argument("--reference", help="label-free selection: 'ensemble' or a member name")
    g.add_argument("--combiner", choices=("average", "learned"),
                   help="add learned-combiner candidates (needs validation labels); default: the bundle's")
    g.add_argument("--search", choices=("auto", "exhaustive", "guided"),
                   help="score every member sequence (exhaustive), grow only prefixes near the front (guided), "
                        "or auto (default: exhaustive up to 1,000 sequences); see docs/selection.md")
    g.add_argument("--confidence-level", type=float,
                   help="with --target-accuracy: meet the target with the lower end of the exact interval at "
                        "this level (e.g. 0.9); also the level of the intervals reported (default 0.9)")


def backend_args(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--threads``, for every command that runs a bundle."""
    from edge_committee.backend import backend_names

    g = p.add_argument_group("runtime")
    g.add_argument("--backend", default="onnxrt",
                   help=f"how to run the members (default onnxrt; known: {', '.join(backend_names())})")
    g.add_argument("--threads", type=int, help="ONNX Runtime threads")
    g.add_argument("--preprocess", choices=("exact", "fast"), default=None,
                   help="CPU preprocessing: exact (bit for bit the framework's resize) or fast (PyTorch's uint8 "
                        "resize, within one grey level; docs/preprocessing_benchmark.md); default: each "
                        "member's execution key (exact unless the spec says fast)")


def to_float(value: str, flag: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise EdgeCommitteeError(f"{flag}: {value!r} is not a number") from None


def safe_text(text: Any, max_len: int | None = None) -> str:
    """``text`` fit for a terminal: control and other non-printable characters escaped (``\\x1b``).

    A label, a file name or an error message can hold escape sequences that retitle, clear or
    recolour the terminal; they are shown, never obeyed. ``max_len`` caps the result (with "...").
    """
    text = str(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if max_len is not None and len(text) > max_len:
        text = text[: max_len - 3] + "..."
    return text


def _finite_or_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def dumps_strict(obj: Any, **kwargs) -> str:
    """JSON that strict parsers accept: NaN and +-inf become ``null`` (``allow_nan=False``)."""
    return json.dumps(_finite_or_none(obj), allow_nan=False, **kwargs)


def print_summary(manifest: dict) -> None:
    from edge_committee.bundle.report import build_report_markdown

    text = build_report_markdown(manifest)
    start = text.index("## Members")
    end = text.index("The full trade-off")
    print("\n".join(safe_text(line) for line in text[start:end].rstrip().splitlines()))
