"""``edge-committee predict DIR inputs...``: classify image files, folders, globs or .npy batches.

A video bundle (``task: video``) takes ``.npy`` files of clips or video files instead (:func:`run_clips`).

The inputs are decoded and classified ``--batch-size`` images at a time and each batch's rows are
printed as soon as it is done, so memory stays flat over a folder of any size
(:mod:`edge_committee.data.inputs`). A progress bar goes to stderr when stderr is a terminal and
``-q`` is not given; stdout holds only the results, so ``--json`` output piped to a file or a
program is never mixed with it.
"""

from __future__ import annotations

import contextlib
import math
import sys

from edge_committee.cli._common import backend_args, dumps_strict, safe_text
from edge_committee.errors import EdgeCommitteeError

HELP = "classify image files, folders, globs or .npy batches with a bundle"
DEFAULT_BATCH_SIZE = 32  #: images decoded and classified per call (flat memory, few Python calls)


def add_arguments(p) -> None:
    p.add_argument("bundle")
    p.add_argument("inputs", nargs="+",
                   help="image files, folders (searched recursively), quoted glob patterns ('frames/**/*.jpg'), "
                        "or .npy arrays of uint8 images (N, H, W[, C]); for a video bundle, .npy arrays of uint8 "
                        "clips (N, T, H, W[, C]) or video files (cut into clips)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per input (strict JSON: a confidence that is not a number is null)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"images decoded and classified at a time (default {DEFAULT_BATCH_SIZE}); "
                        "memory grows with it, not with the number of inputs")
    p.add_argument("--member", metavar="NAME", help="run this member alone instead of the bundle's cascade")
    backend_args(p)


def read_inputs(paths: list[str]):
    """The inputs as lazy segments (nothing decoded; every named file checked to exist)."""
    from edge_committee.data.inputs import expand_inputs

    return expand_inputs(paths)


def format_rows(names: list[str], pred, members: list[str], as_json: bool) -> list[str]:
    """One output line per image of a batch (tab-separated text, or strict JSON)."""
    if hasattr(pred, "tile_exit_stage"):
        return format_dense_rows(names, pred, members, as_json)
    labels = pred.names()
    lines = []
    for j, src in enumerate(names):
        conf = float(pred.confidence[j])
        row = {"input": src, "label": labels[j], "class": int(pred.labels[j]),
               "confidence": round(conf, 6) if math.isfinite(conf) else None,
               "exit_stage": int(pred.exit_stage[j]), "exit_member": members[pred.exit_stage[j]],
               "flag": bool(pred.flags[j])}
        if as_json:
            lines.append(dumps_strict(row))
            continue
        fields = [src, row["label"], f"confidence {conf:.4f}" if math.isfinite(conf) else "confidence nan",
                  f"exit stage {row['exit_stage']} ({row['exit_member']})"]
        if row["flag"]:
            fields.append("flag: a member gave non-finite logits (mean over the others)")
        lines.append("\t".join(safe_text(f) for f in fields))
    return lines


def format_dense_rows(names: list[str], pred, members: list[str], as_json: bool) -> list[str]:
    """A segmentation bundle's line per image: pixels per class present, tiles deferred, tiles per exit member
    (the class maps themselves: ``edge_committee.load(bundle).predict(frames).labels``)."""
    import numpy as np

    hist = pred.histogram()
    lines = []
    for j, src in enumerate(names):
        exits = pred.tile_exit_stage[j]
        conf = pred.tile_confidence[j]
        conf = conf[np.isfinite(conf)]
        row = {"input": src, "pixels": int(pred.labels[j].size),
               "histogram": {pred.label_names[c]: int(n) for c, n in enumerate(hist[j]) if n},
               "tiles": int(exits.size), "tiles_deferred": int((exits > 0).sum()),
               "tile_exits": {m: int((exits == k).sum()) for k, m in enumerate(members)},
               "confidence": round(float(conf.mean()), 6) if conf.size else None,
               "flag": bool(pred.tile_flags[j].any())}
        if as_json:
            lines.append(dumps_strict(row))
            continue
        total = max(sum(row["histogram"].values()), 1)
        top = sorted(row["histogram"].items(), key=lambda kv: -kv[1])[:3]
        fields = [src, ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in top),
                  f"deferred {row['tiles_deferred']}/{row['tiles']} tiles"]
        if row["flag"]:
            fields.append("flag: a member gave non-finite logits on some tiles")
        lines.append("\t".join(safe_text(f) for f in fields))
    return lines


def run(args) -> int:
    from edge_committee.api import load
    from edge_committee.data.inputs import count, iter_batches

    if _task(args.bundle) == "video":
        return run_clips(args)
    sources = read_inputs(args.inputs)
    with member_alone(args.bundle, args.member) as (bundle, verify), \
            load(bundle, backend=args.backend, threads=args.threads, verify=verify, preprocess=args.preprocess) as model, \
            _Bar(count(sources), enabled=not getattr(args, "quiet", False)) as bar:
        for names, images in iter_batches(sources, args.batch_size):
            pred = model.predict(images)
            bar.write("\n".join(format_rows(names, pred, model.members, args.json)))
            bar.update(len(names))
    return 0


def _task(bundle: str) -> str | None:
    from pathlib import Path

    from edge_committee.bundle.manifest import MANIFEST, parse_manifest

    try:
        return parse_manifest(Path(bundle) / MANIFEST).get("task")
    except EdgeCommitteeError:
        return None  # load() reports what is wrong with the bundle


def run_clips(args) -> int:
    """A video bundle: each input is a .npy of clips (N, T, H, W[, C]) or a video file cut into clips;
    a row per clip, named ``FILE[i]`` (.npy) or ``FILE@frame`` (the clip's first frame in the video)."""
    import numpy as np

    from edge_committee.api import load
    from edge_committee.runtime.clips import NPY_SUFFIXES, iter_video_clips, read_clips

    if args.batch_size < 1:
        raise EdgeCommitteeError(f"--batch-size must be at least 1; got {args.batch_size}")
    opts = {"backend": args.backend, "threads": args.threads, "preprocess": args.preprocess}
    with member_alone(args.bundle, args.member) as (bundle, verify), load(bundle, verify=verify, **opts) as model:
        for path in args.inputs:
            if path.lower().endswith(NPY_SUFFIXES):
                clips = read_clips(path, model.clip_frames, mmap=True)
                named = ((f"{path}[{i}]", clips[i]) for i in range(len(clips)))
            else:  # decoded a clip at a time: memory holds one batch however long the video
                named = ((f"{path}@{s}", clip) for s, clip in iter_video_clips(path, model.clip_frames))
            for batch in _chunks(named, args.batch_size):
                pred = model.predict(np.stack([c for _, c in batch]))
                print("\n".join(format_rows([n for n, _ in batch], pred, model.members, args.json)), flush=True)
    return 0


def _chunks(items, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Bar:
    """A tqdm bar on stderr (only when stderr is a terminal); result lines go to stdout through it,
    so a terminal showing both never gets a line torn by a redraw."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm is a dependency, but a bar is never worth failing for
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc="predict", unit="img", leave=False, file=sys.stderr)

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)


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
