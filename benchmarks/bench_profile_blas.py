"""Why the profiler times with NumPy's BLAS on one thread: batch-64 preprocessing, threaded vs not.

Times ``Preprocessing(...)`` of 64 random 28x28 gray images (the Fashion-MNIST example's source)
to each ``--sizes`` (phi0's 16x16 ... phi5's 32x32) by the profiler's rule
(:func:`edge_committee.profile.timing.measure`), once with BLAS as NumPy starts it and once inside
:func:`edge_committee._util.blas_single_thread`, in fresh child processes, ``--rounds`` times, with
``--busy`` busy-loop processes beside it (a neighbour's load on a small machine). Prints the median,
mean and max ms of each. Run it without ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` set: either
makes OpenBLAS start one thread and hides the effect.

Example (the figures of ``docs/latency.md``)::

    python benchmarks/bench_profile_blas.py --busy 2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, sys, numpy as np
from functools import partial
from edge_committee._util import blas_single_thread
from edge_committee.profile.timing import TimingConfig, measure
from edge_committee.spec.preprocess import Preprocessing
x = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
out = {}
for s in json.loads(sys.argv[2]):
    pp = Preprocessing.from_dict({"size": [s, s], "color": "gray", "mean": [0.286], "std": [0.353]})
    if sys.argv[1] == "one":
        with blas_single_thread():
            ms = measure(partial(pp, x), TimingConfig())[0]
    else:
        ms = measure(partial(pp, x), TimingConfig())[0]
    out[s] = [float(np.median(ms)), float(ms.mean()), float(ms.max())]
print(json.dumps(out))
"""


def _busy(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="16,32", help="output sides, comma-separated (default 16,32)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--busy", type=int, default=0, help="busy-loop processes beside it (default 0)")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if var in os.environ:
            print(f"note: {var}={os.environ[var]} is set; OpenBLAS may start one thread and hide the effect")
    sizes = json.dumps([int(s) for s in args.sizes.split(",")])
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    stop_at = time.time() + 3600
    hogs = [mp.Process(target=_busy, args=(stop_at,), daemon=True) for _ in range(args.busy)]
    for h in hogs:
        h.start()
    try:
        for r in range(args.rounds):
            for mode in ("threads", "one"):
                res = json.loads(subprocess.run([sys.executable, "-c", CHILD, mode, sizes], env=env, check=True,
                                                capture_output=True, text=True).stdout)
                cells = "  ".join(f"{s}x{s}: median {v[0]:.2f} mean {v[1]:.2f} max {v[2]:.1f} ms"
                                  for s, v in res.items())
                label = "BLAS as started" if mode == "threads" else "BLAS on 1 thread"
                print(f"round {r + 1}, {label:>16}: {cells}", flush=True)
    finally:
        for h in hogs:
            h.terminate()


if __name__ == "__main__":
    main()
