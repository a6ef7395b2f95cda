"""``edge-committee bench DIR``: the chosen cascade vs its largest and most accurate members, end to end."""

from __future__ import annotations

from pathlib import Path

from edge_committee.cli._common import backend_args
from edge_committee.errors import EdgeCommitteeError

HELP = "time the chosen cascade end to end next to its largest and most accurate single members"


def add_arguments(p) -> None:
    p.add_argument("bundle")
    p.add_argument("--batch", default="1,64", help="batch sizes, comma-separated (default 1,64)")
    p.add_argument("--source", help="images: .npy (uint8 N,H,W[,C]), .npz (x, y), an image folder, or a spec "
                                    "YAML (its test split); default: the bundle's test split, as built. A video "
                                    "bundle: clips .npy (uint8 N,T,H,W[,C]), .npz (x, y), a video file (cut into "
                                    "clips) or a spec YAML")
    p.add_argument("--limit", type=int, help="use the first N images (default all)")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches per contender (default 3)")
    p.add_argument("--profile", help="profile for the cost model's predictions (default: this device's)")
    p.add_argument("--out", help="folder for bench.json, bench.md and bench.png (default bench-<bundle name>)")
    p.add_argument("--member", action="append", default=[], metavar="NAME",
                   help="also bench this member alone (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="replace bench files in --out that an earlier bench did not write")
    p.add_argument("--no-plot", action="store_true", help="skip the plot (and its frontier computation)")
    backend_args(p)


def read_source(source: str | None, manifest: dict | None):
    """A RawSplit: ``source`` (.npy, .npz, image folder, spec YAML), else the bundle's test split
    as recorded at build (checked against its sha256)."""
    from edge_committee.data.readers import read_split

    labels = (manifest or {}).get("labels")
    if source is None:
        entry = ((manifest or {}).get("data") or {}).get("test") or {}
        if "source" not in entry:
            raise EdgeCommitteeError("the bundle does not record where its test split is (built before this "
                                     "release); pass --source IMAGES or --source committee.yaml")
        split = read_split(entry["source"], Path("/"), labels, "the bundle's data.test")
        if split.content_hash() != entry.get("sha256"):
            raise EdgeCommitteeError(f"the bundle's test split ({', '.join(split.files)}) changed since the build "
                                     "(sha256 differs); pass --source")
        return split
    p = Path(source)
    if p.suffix in (".yaml", ".yml"):
        from edge_committee.spec.committee import load_spec

        spec = load_spec(p)
        which = "test" if "test" in spec.data else "validation"
        return read_split(spec.data[which], spec.base_dir, spec.labels, f"{p}: data.{which}")
    fmt = {".npy": ("npy", "images"), ".npz": ("npz", "path")}.get(p.suffix, ("folder", "path"))
    return read_split({"format": fmt[0], fmt[1]: str(p.resolve())}, Path("/"), labels, str(p))


def run(args) -> int:
    from edge_committee.bundle import read_manifest
    from edge_committee.profile import STAT_FOR_KIND, LatencyModel
    from edge_committee.profile.bench import bench_bundle, device_profile
    from edge_committee.profile.profiler import parse_batches
    from edge_committee.profile.report import (
        bench_markdown,
        check_bench_out,
        frontier_points,
        write_bench,
    )

    out = Path(args.out or f"bench-{Path(args.bundle).resolve().name}")
    check_bench_out(out, args.force)  # before the timing: a wrong --out fails at once
    manifest = read_manifest(args.bundle)
    if manifest.get("task") == "segmentation":
        return _bench_segmentation(args, manifest, out)
    if manifest.get("task") == "video":
        return _bench_video(args, manifest, out)
    split = read_source(args.source, manifest)
    batches = parse_batches(args.batch)
    profile = device_profile(args.bundle, manifest, args.profile, args.backend, args.threads)
    doc = bench_bundle(args.bundle, split.images, split.labels, batches, args.backend, args.threads,
                       warmup=args.warmup, limit=args.limit, profile=profile, show_progress=not args.quiet,
                       manifest=manifest, members=args.member)
    doc["source"] = args.source or "the bundle's test split"
    curves = None
    if profile is not None and not args.no_plot:
        model = LatencyModel.from_profile(profile, STAT_FOR_KIND["mean"])
        curves = {b: frontier_points(args.bundle, manifest, model, b) for b in batches}
    paths = write_bench(doc, out, curves, force=args.force)
    print(bench_markdown(doc))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def read_dense_source(source: str | None, manifest: dict):
    """(frames, class maps or None) for a segmentation bench: ``--source`` as an .npz (x, y), an .npy of
    frames, or the spec YAML (its test split); the bundle records no data path of its own."""
    import numpy as np

    from edge_committee.data.readers import as_nhwc_uint8
    from edge_committee.pipeline_dense import read_dense_split

    if source is None:
        raise EdgeCommitteeError("bench: a segmentation bundle does not record where its frames are; pass --source "
                                 "committee.yaml (its test split), --source FRAMES.npz (x, y) or FRAMES.npy")
    p = Path(source)
    if p.suffix in (".yaml", ".yml"):
        from edge_committee.spec.committee import load_spec

        spec = load_spec(p)
        which = "test" if "test" in spec.data else "validation"
        return read_dense_split(spec.data[which], spec.base_dir, f"{p}: data.{which}")
    if p.suffix == ".npz":
        return read_dense_split({"format": "npz", "path": str(p.resolve())}, Path("/"), str(p))
    if p.suffix == ".npy":
        try:
            return as_nhwc_uint8(np.load(p, allow_pickle=False), str(p)), None
        except (OSError, ValueError) as exc:
            raise EdgeCommitteeError(f"{p}: cannot read ({exc})") from None
    raise EdgeCommitteeError(f"--source {source}: a segmentation bench reads committee.yaml, FRAMES.npz (x, y) or "
                             "FRAMES.npy")


def _bench_segmentation(args, manifest: dict, out: Path) -> int:
    from edge_committee.profile.bench_dense import bench_segmentation

    if args.profile:
        raise EdgeCommitteeError("--profile: a segmentation bench has no cost-model predictions (a profile times "
                                 "members per sample, not per deferred tile); leave it out")
    frames, class_maps = read_dense_source(args.source, manifest)
    return _bench_task(args, out, lambda **kw: bench_segmentation(args.bundle, frames, class_maps, **kw),
                       manifest, args.source)


def _bench_video(args, manifest: dict, out: Path) -> int:
    from edge_committee.profile.bench_video import bench_video, read_video_source

    if args.profile:
        raise EdgeCommitteeError("--profile: a video bench has no cost-model predictions (a device profile times "
                                 "members on images, not on their views of a clip); leave it out")
    clips, labels = read_video_source(args.source, manifest)
    return _bench_task(args, out, lambda **kw: bench_video(args.bundle, clips, labels, **kw), manifest,
                       args.source or "the bundle's test split")


def _bench_task(args, out: Path, bench, manifest: dict, source: str) -> int:
    """Run a dense kind's ``bench(**options)`` with the command's options, write and print its report."""
    from edge_committee.profile.profiler import parse_batches
    from edge_committee.profile.report import bench_markdown, write_bench

    doc = bench(batch_sizes=parse_batches(args.batch), backend=args.backend, threads=args.threads,
                warmup=args.warmup, limit=args.limit, show_progress=not args.quiet, manifest=manifest,
                members=args.member, **({"preprocess": args.preprocess} if args.preprocess else {}))
    doc["source"] = source
    paths = write_bench(doc, out, None, force=args.force)
    print(bench_markdown(doc))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
