"""Peak memory of ``edge-committee predict`` over a folder of many small images.

Writes ``--images`` random-content JPEGs (``--size`` pixels square, RGB, quality 90) into
``--folder`` (kept between runs: only missing files are written), then runs
``python -m edge_committee predict BUNDLE FOLDER --json`` in a child process for each count of
``--counts`` (the first N files, through a folder of links), and reports the child's peak RSS
(``ru_maxrss`` of the finished child), wall time and images/s. Output goes to ``/dev/null`` so only
the SDK's own memory is measured.

``--pythonpath`` runs another checkout of the SDK in the child (e.g. an older commit unpacked with
``git archive``) to compare with; by default the child imports the checkout this script is in.

Example (the figures of ``docs/streamed_evaluation.md``)::

    python benchmarks/bench_predict_memory.py /tmp/h18io_fm --images 20000 --counts 2000,20000 \\
        --folder /tmp/predict20k --json /tmp/predict_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def write_images(folder: Path, n: int, size: int) -> list[Path]:
    """``n`` JPEGs ``00000.jpg``... of random blocky content (compresses like a photo, not like noise)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"{i:05d}.jpg" for i in range(n)]
    for p in paths:
        if not p.exists():
            small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR).save(p, quality=90)
    return paths


def first_n(paths: list[Path], n: int, root: Path) -> Path:
    """A folder of symbolic links to the first ``n`` images (so one set of files serves every count)."""
    sub = root / f"first{n}"
    sub.mkdir(parents=True, exist_ok=True)
    for p in paths[:n]:
        link = sub / p.name
        if not link.exists():
            link.symlink_to(p)
    return sub


def run_predict(bundle: str, folder: Path, batch_size: int | None, pythonpath: str | None,
                as_files: bool = False) -> dict:
    """Run predict in a child; its peak RSS from ``wait4``'s rusage (only that child's)."""
    # the child runs outside any checkout (``python -m`` puts the working folder first on sys.path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=pythonpath or str(Path(__file__).resolve().parents[1]))
    inputs = sorted(str(p) for p in folder.iterdir()) if as_files else [str(folder)]
    cmd = [sys.executable, "-m", "edge_committee", "predict", str(Path(bundle).resolve()), *inputs, "--json",
           "--threads", "1"]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        child = subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE, env=env, cwd=folder.parent)
        _, status, usage = os.wait4(child.pid, 0)
        err = child.stderr.read().decode()  # type: ignore[union-attr]
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict failed: {err.strip()[-500:]}")
    n = sum(1 for _ in folder.iterdir())
    return {"images": n, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "wall_s": round(wall, 2),
            "images_per_s": round(n / wall, 1), "batch_size": batch_size, "pythonpath": pythonpath or "",
            "inputs": "files" if as_files else "folder"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--images", type=int, default=20000, help="images to write (default 20000)")
    ap.add_argument("--counts", default="2000,20000", help="image counts to run predict on (default 2000,20000)")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    ap.add_argument("--folder", default="/tmp/predict_memory", help="where the images go")
    ap.add_argument("--batch-size", type=int, help="predict --batch-size (default: predict's)")
    ap.add_argument("--pythonpath", help="PYTHONPATH of the child: another checkout of the SDK to compare")
    ap.add_argument("--as-files", action="store_true",
                    help="pass every file on the command line instead of the folder (older releases took no folder)")
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args()
    root = Path(args.folder)
    t0 = time.perf_counter()
    paths = write_images(root / "all", args.images, args.size)
    print(f"{len(paths)} images of {args.size}x{args.size} in {root / 'all'} ({time.perf_counter() - t0:.1f} s)")
    rows = []
    for n in [int(c) for c in args.counts.split(",")]:
        row = run_predict(args.bundle, first_n(paths, n, root), args.batch_size, args.pythonpath, args.as_files)
        rows.append(row)
        print(f"{row['images']:>6} images: peak RSS {row['peak_rss_mb']:.1f} MB, {row['wall_s']:.1f} s, "
              f"{row['images_per_s']:.0f} images/s")
    doc = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "python": platform.python_version()},
           "command": " ".join(sys.argv), "image_size": args.size, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
