"""``edge-committee profile DIR``: time the members and the runtime on this device, into the bundle."""

from __future__ import annotations

import logging

from edge_committee.cli._common import backend_args
from edge_committee.errors import EdgeCommitteeError

LOG = logging.getLogger("edge_committee")

HELP = "measure member and runtime latencies on this device and store the profile in the bundle"


def add_arguments(p) -> None:
    p.add_argument("bundle")
    p.add_argument("--batch", default="1,8,64", help="batch sizes to time, comma-separated (default 1,8,64)")
    p.add_argument("--members", help="comma-separated member names (default: every member variant)")
    p.add_argument("--source", help="raw images to time preprocessing on: .npy/.npz/image folder "
                                    "(default: random images of the size the bundle records)")
    p.add_argument("--source-size", metavar="WxH",
                   help="profile at this image size, width x height as camera URIs write it (e.g. 1920x1080 for a "
                        "1080p camera): random images of that size, or with --source its images resized to it")
    p.add_argument("--dry-run", action="store_true", help="print the profile instead of writing it")
    backend_args(p)
    g = p.add_argument_group("timing (trtexec's method: warm up, then until the two halves' medians agree)")
    g.add_argument("--warmup", type=float, default=0.1, help="warm-up seconds per timing (default 0.1)")
    g.add_argument("--min-iters", type=int, default=10, help="fewest timed calls (default 10)")
    g.add_argument("--min-time", type=float, default=0.2, help="fewest timed seconds (default 0.2)")
    g.add_argument("--max-time", type=float, default=2.0, help="most timed seconds per timing (default 2)")
    g.add_argument("--tolerance", type=float, default=0.05,
                   help="relative difference of the halves' medians called stable (default 0.05)")


def summary(doc: dict) -> str:
    """A Markdown table: median ms (p90) per batch size of each member's inference, of one runtime
    call with it alone, and of the runtime's parts timed apart."""
    batches = [str(b) for b in doc["batch_sizes"]]
    head = "| timing | " + " | ".join(f"b{b} median ms (p90)" for b in batches) + " |"
    lines = [f"profile {doc['name']} ({doc['duration_s']:.1f} s)", "", head,
             "|---|" + "---:|" * len(batches)]

    def row(name: str, table: dict) -> str:
        cells = [f"{table[b]['median_ms']:.4g} ({table[b]['p90_ms']:.3g})" + ("" if table[b].get("stable", True)
                 else " *") for b in batches]
        return f"| {name} | " + " | ".join(cells) + " |"

    for n, m in doc["members"].items():
        lines += [row(f"{n}: inference", m["batches"]), row(f"{n}: one runtime call", m["stage"])]
    ov = doc["overhead"]
    lines += [row(f"apart: {k}", ov[k]) for k in ("call", "gather", "gate")]
    lines += [row(f"apart: preprocess {n}", t) for n, t in ov["preprocess"].items()]
    if any(not t.get("stable", True) for m in doc["members"].values() for t in m["batches"].values()):
        lines.append("\n* not stable within --max-time (the machine's load varied); figures are still medians")
    return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` (width x height, as ``export-onnx --source-size``) -> (1080, 1920), NumPy's (H, W)."""
    try:
        w, h = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        h = w = 0
    if not (0 < h <= 16384 and 0 < w <= 16384):
        raise EdgeCommitteeError(f"--source-size: {text!r} is not a size WxH; pass e.g. 1920x1080 (width x height, "
                                 "as camera URIs write it; 1 to 16384 pixels each)")
    return h, w


def source_images(split, n: int, size: tuple[int, int] | None = None):
    """Up to ``n`` raw images of ``split`` (decoded from a folder only as many as needed) as one uint8
    (N, H, W, C) array: resized to ``size`` when given (PIL, bicubic), else those of the most
    common size among them (the profile times one source size)."""
    import numpy as np

    from edge_committee.data.readers import as_nhwc_uint8

    first = split.images[: min(n, len(split.images))]
    if isinstance(first, np.ndarray) and size is None:
        return as_nhwc_uint8(first, "--source")
    images = [np.asarray(im) for im in first]
    images = [im[..., None] if im.ndim == 2 else im for im in images]
    if size is not None:
        return np.stack([_resize(im, size) for im in images])
    shapes = [im.shape for im in images]
    common = max(set(shapes), key=shapes.count)
    if len(set(shapes)) > 1:
        LOG.info("--source: images of %d sizes; profiling with the %d of size %s (the most common)",
                 len(set(shapes)), shapes.count(common), "x".join(map(str, common)))
    return np.stack([im for im in images if im.shape == common])


def _resize(image, size: tuple[int, int]):
    import numpy as np
    from PIL import Image

    gray = image.shape[-1] == 1
    im = Image.fromarray(image[..., 0] if gray else image).resize((size[1], size[0]), Image.Resampling.BICUBIC)
    out = np.asarray(im, np.uint8)
    return out[..., None] if gray else out


def random_images(bundle: str, size: tuple[int, int], n: int):
    """``n`` random uint8 images of ``size`` with the channels of the bundle's recorded images."""
    import numpy as np

    from edge_committee.bundle import read_manifest
    from edge_committee.profile.profiler import source_shape

    channels = source_shape(read_manifest(bundle))[2]
    return np.random.default_rng(0).integers(0, 256, (n, *size, channels), dtype=np.uint8)


def run(args) -> int:
    import json

    from edge_committee.cli.bench import read_source
    from edge_committee.profile import (
        TimingConfig,
        parse_batches,
        profile_bundle,
        write_profile,
    )

    timing = TimingConfig(warmup_s=args.warmup, min_iters=args.min_iters, min_time_s=args.min_time,
                          max_time_s=args.max_time, tolerance=args.tolerance)
    batches = parse_batches(args.batch)
    size = parse_size(args.source_size) if args.source_size else None
    images = source_images(read_source(args.source, None), max(batches), size) if args.source else None
    if size is not None and images is None:
        images = random_images(args.bundle, size, max(batches))
    members = [m.strip() for m in args.members.split(",")] if args.members else None
    doc = profile_bundle(args.bundle, args.backend, batches, args.threads, members=members,
                         images=images, timing=timing, show_progress=not args.quiet)
    if args.dry_run:
        print(json.dumps(doc, indent=1))
        return 0
    path = write_profile(args.bundle, doc)
    print(summary(doc))
    print(f"\nwritten to {path}")
    return 0
