"""How hard is a camera shift for the example's members? (chooses the shift of self_training.py)

For each (gain, brightness, blur sigma) the first 2,000 Fashion-MNIST test images are shifted
(``blur(x) * gain + brightness``, rounded, clipped) and phi0, phi4 and their average (the example
cascade's members, i.e. the self-training teacher) are scored, with phi0's mean confidence.

    python benchmarks/shift_probe.py out/fashion_mnist
"""

from __future__ import annotations

import json
import sys

import numpy as np
from scipy.ndimage import gaussian_filter

from edge_committee.cascade.reference import ensemble, softmax
from edge_committee.data.readers import read_idx
from edge_committee.evaluate.evaluate import run_member
from edge_committee.spec.preprocess import Preprocessing

SHIFTS = [(0.75, 25, 0.7), (0.8, 15, 0.8), (0.7, 40, 0.6), (0.6, 30, 1.0), (1.0, 30, 0.0), (0.7, 0, 1.0),
          (1.0, 10, 0.0), (1.0, 15, 0.0), (0.9, 10, 0.5), (0.8, 0, 0.7), (0.85, 8, 0.6), (1.2, 10, 0.5)]


def shift(x: np.ndarray, gain: float, offset: float, sigma: float) -> np.ndarray:
    f = gaussian_filter(x.astype(np.float32), sigma=(0, sigma, sigma, 0)) if sigma else x.astype(np.float32)
    return np.clip(np.rint(f * gain + offset), 0, 255).astype(np.uint8)


def main(bundle: str) -> None:
    with open(f"{bundle}/manifest.json", encoding="utf-8") as f:
        m = json.load(f)
    by = {e["name"]: e for e in m["members"]}
    d = "/usr/share/datasets/fashion-mnist"
    x = read_idx(f"{d}/t10k-images-idx3-ubyte.gz")[:2000, ..., None]
    y = read_idx(f"{d}/t10k-labels-idx1-ubyte.gz")[:2000]
    print("| gain | brightness | blur sigma | phi0 % | phi4 % | phi0+phi4 average % | phi0 mean confidence |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for g, o, s in SHIFTS:
        xs = shift(x, g, o, s)
        out = {n: run_member(f"{bundle}/{by[n]['file']}", Preprocessing.from_dict(by[n]["preprocessing"]), xs, 500)
               for n in ("phi0", "phi4")}
        avg = ensemble([out["phi0"], out["phi4"]])
        acc = lambda p: 100 * np.mean(p.argmax(1) == y)
        print(f"| {g} | {o} | {s} | {acc(out['phi0']):.1f} | {acc(out['phi4']):.1f} | {acc(avg):.1f} | "
              f"{softmax(out['phi0']).max(1).mean():.3f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/fashion_mnist")
