"""``edge-committee predict DIR inputs...``: classify image files or .npy batches."""

from __future__ import annotations

import contextlib
import math

from edge_committee.cli._common import backend_args, dumps_strict, safe_text
from edge_committee.errors import EdgeCommitteeError

HELP = "classify image files or an .npy batch with a bundle"


def add_arguments(p) -> None:
    p.add_argument("bundle")
    p.add_argument("inputs", nargs="+", help="image files, or .npy arrays of uint8 images (N, H, W[, C])")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per input (strict JSON: a confidence that is not a number is null)")
    p.add_argument("--member", metavar="NAME", help="run this member alone instead of the bundle's cascade")
    backend_args(p)


def read_inputs(paths: list[str]):
    """[(name, uint8 image)] from image files and .npy batches."""
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


def run(args) -> int:
    from edge_committee.api import load

    items = read_inputs(args.inputs)
    with member_alone(args.bundle, args.member) as (bundle, verify), \
            load(bundle, backend=args.backend, threads=args.threads, verify=verify) as model:
        pred = model.predict([im for _, im in items])
    names = pred.names()
    for j, (src, _) in enumerate(items):
        conf = float(pred.confidence[j])
        row = {"input": src, "label": names[j], "class": int(pred.labels[j]),
               "confidence": round(conf, 6) if math.isfinite(conf) else None,
               "exit_stage": int(pred.exit_stage[j]), "exit_member": model.members[pred.exit_stage[j]],
               "flag": bool(pred.flags[j])}
        if args.json:
            print(dumps_strict(row))
        else:
            fields = [src, row["label"], f"confidence {conf:.4f}" if math.isfinite(conf) else "confidence nan",
                      f"exit stage {row['exit_stage']} ({row['exit_member']})"]
            if row["flag"]:
                fields.append("flag: a member gave non-finite logits (mean over the others)")
            print("\t".join(safe_text(f) for f in fields))
    return 0


@contextlib.contextmanager
def member_alone(bundle: str, member: str | None):
    """(bundle to load, verify it?): the bundle itself, or with ``member``, a temporary view of it
    (its files hard-linked, checked here) whose committee is that member alone."""
    if member is None:
        yield bundle, True
        return
    from edge_committee.bundle import read_manifest
    from edge_committee.profile.views import member_view

    manifest = read_manifest(bundle)
    names = [m["name"] for m in manifest["members"]]
    if member not in names:
        raise EdgeCommitteeError(f"--member {member!r}: {bundle} has no such member; its members: {', '.join(names)}")
    with member_view(bundle, manifest, [member]) as view:
        yield view, False
