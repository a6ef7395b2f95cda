"""``edge-committee export-onnx BUNDLE --out cascade.onnx``: the whole cascade as one ONNX file."""

from __future__ import annotations

import math

from edge_committee.cli._common import CONFIDENCES, to_float
from edge_committee.errors import EdgeCommitteeError

HELP = "write the cascade (preprocessing, members, gates, early exit) as one ONNX file"


def add_arguments(p) -> None:
    p.add_argument("bundle")
    p.add_argument("--out", help="the ONNX file to write (an existing file only if an earlier export, or --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file that is not an earlier export")
    p.add_argument("--into-bundle", action="store_true",
                   help="also add it to the bundle (fused/cascade.<H>x<W>x<C>.<form>.<gate>.onnx, in the manifest)")
    p.add_argument("--source-size", metavar="WxH[xC]",
                   help="raw image width x height (WxH, as camera URIs; e.g. 640x480 or 640x480x3) the file takes (default: the validation images' size, if recorded)")
    p.add_argument("--gate", choices=("standard", "plugin"), default="standard",
                   help="standard ONNX ops (ONNX Runtime, default) or the CascadeGate plugin node (TensorRT)")
    p.add_argument("--form", choices=("compact", "mask"), default="compact",
                   help="compact: later members run on the survivors only (default); mask: static shapes")
    p.add_argument("--preprocess", choices=("exact", "float32"), default="exact",
                   help="exact: PIL-style resizing (rounded between passes) in float64, bit-exact (default); "
                        "float32: no float64, as TensorRT needs (Pillow's weights split in halves: also bit-exact)")
    g = p.add_argument_group("committee (default: the bundle's chosen cascade)")
    g.add_argument("--members", help="comma-separated member names, in stage order")
    g.add_argument("--thresholds", help="comma-separated thresholds, one per stage but the last")
    g.add_argument("--ensemble", action="store_true", help="the members as an ensemble (every member runs)")
    g.add_argument("--confidence", choices=CONFIDENCES, help="confidence function (default: the bundle's)")


def committee(args):
    """The committee given on the command line, or None for the bundle's chosen one."""
    from edge_committee.bundle import read_manifest
    from edge_committee.export.cascade_onnx import CascadeDef
    from edge_committee.select.objective import NEVER_EXIT

    if args.members is None:
        if args.thresholds or args.ensemble or args.confidence:
            raise EdgeCommitteeError("--thresholds, --ensemble and --confidence need --members")
        return None
    names = [n.strip() for n in args.members.split(",")]
    if not all(names):
        raise EdgeCommitteeError(f"--members {args.members!r}: an empty member name; give names separated by commas")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise EdgeCommitteeError(f"--members {args.members!r}: member {dup!r} appears twice; each member runs once")
    if args.ensemble and args.thresholds:
        raise EdgeCommitteeError("give --thresholds or --ensemble, not both")
    if args.ensemble:
        thresholds, kind = [NEVER_EXIT] * (len(names) - 1), "ensemble"
    else:
        thresholds = [to_float(t, "--thresholds") for t in (args.thresholds or "").split(",") if t.strip()]
        bad = [t for t in thresholds if not math.isfinite(t)]
        if bad:
            raise EdgeCommitteeError(f"--thresholds: {bad[0]} is not a finite number; give confidence thresholds "
                                     "such as 0.9")
        kind = "cascade" if len(names) > 1 else "single"
    # the export reads and verifies the bundle itself: here only the confidence function is needed
    confidence = args.confidence or (read_manifest(args.bundle, verify=False).get("cascade") or {}).get(
        "confidence", "max_prob")
    return CascadeDef(names, thresholds, confidence, kind)


def run(args) -> int:
    from edge_committee.export.cascade_onnx.export import export_cascade_onnx

    written = export_cascade_onnx(args.bundle, args.out, into_bundle=args.into_bundle, cascade=committee(args),
                                  source_size=args.source_size, form=args.form, gate=args.gate,
                                  preprocess=args.preprocess, force=args.force)
    for path in written:
        print(path)
    return 0
