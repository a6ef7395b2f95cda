"""Self-training the example's first member on shifted "camera" footage (``edge-committee adapt``).

The camera: the Fashion-MNIST test split with a distribution shift made here: the black level
lifted by 15 (``--gain``, ``--brightness``, ``--sigma`` set a contrast gain and a Gaussian blur). Its first half (5,000 images)
is the unlabeled footage ``adapt`` learns from; its second half (5,000) is held out for scoring
only, as are all labels. Measured on both halves, before and after:

- the first member's accuracy and the share of images the deployed cascade stops at its first
  stage (its exit rate), and the cascade's accuracy and mean MACs as deployed (thresholds from
  the clean validation split);
- the cascade's mean MACs at equal accuracy: the cheapest candidate of the bundle's frontier
  (singles, ensembles, cascades; exact threshold search) scored on the held-out shifted half
  with its labels (an oracle of what the members allow, not a deployable choice), reaching the
  accuracy the deployed cascade had before adaptation.

    python benchmarks/self_training.py --bundle out/fashion_mnist --work out/fm_adapt \\
        --json docs/self_training.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "fashion_mnist" / "committee.yaml"


def camera(x: np.ndarray, gain: float = 1.0, brightness: float = 15.0, sigma: float = 0.0) -> np.ndarray:
    """The shift: (N, H, W, 1) uint8 -> ``blur_sigma(x) * gain + brightness``, rounded and clipped."""
    from scipy.ndimage import gaussian_filter

    f = x.astype(np.float32)
    if sigma > 0:
        f = gaussian_filter(f, sigma=(0, sigma, sigma, 0))
    f = f * gain + brightness
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def member_logits(bundle: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    from edge_committee.bundle import read_manifest
    from edge_committee.evaluate.evaluate import run_member
    from edge_committee.spec.preprocess import Preprocessing

    m = read_manifest(bundle)
    return {e["name"]: run_member(bundle / e["file"], Preprocessing.from_dict(e["preprocessing"]), images, 500)
            for e in m["members"]}


def measure(bundle: Path, halves: dict, target: float | None) -> dict:
    """Figures of a bundle on each shifted half (see the module docstring)."""
    from edge_committee.bundle import read_manifest
    from edge_committee.cascade.reference import evaluate_cascade
    from edge_committee.select import SelectionData, select_cascade

    m = read_manifest(bundle)
    c = m["cascade"]
    macs = {e["name"]: e["macs"] for e in m["members"]}
    out = {"cascade": c["members"], "thresholds": c["thresholds"][: len(c["members"]) - 1]}
    for half, (x, y) in halves.items():
        logits = member_logits(bundle, x)
        ev = evaluate_cascade([logits[n] for n in c["members"]], y, c["thresholds"], [macs[n] for n in c["members"]],
                              c["confidence"])
        first = c["members"][0]
        row = {"first_member": first, "first_member_accuracy": float(np.mean(logits[first].argmax(1) == y)),
               "first_stage_exit_rate": ev.exit_histogram[0] / len(y), "cascade_accuracy": ev.accuracy,
               "cascade_mean_macs": ev.mean_cost}
        if half == "held_out":
            data = SelectionData(logits, None, macs, val_labels=y, groups={e["name"]: e.get("base", e["name"])
                                                                          for e in m["members"]})
            goal = ev.accuracy if target is None else target
            best = select_cascade(data, "accuracy", goal, max_len=4).chosen
            row.update({"target_accuracy": goal, "cheapest_at_target": best.label,
                        "cheapest_at_target_mean_macs": best.mean_cost,
                        "cheapest_at_target_accuracy": best.val_accuracy})
        out[half] = row
    return out


def student_figures(path: Path, bundle: Path, member: str, halves: dict) -> dict:
    """The student's own accuracy and mean confidence on each half, kept in the bundle or not."""
    from edge_committee.bundle import read_manifest
    from edge_committee.cascade.reference import softmax
    from edge_committee.evaluate.evaluate import run_member
    from edge_committee.spec.preprocess import Preprocessing

    entry = next(e for e in read_manifest(bundle)["members"] if e["name"] == member)
    pp = Preprocessing.from_dict(entry["preprocessing"])
    out = {}
    for half, (x, y) in halves.items():
        logits = run_member(path, pp, x, 500)
        out[half] = {"accuracy": float(np.mean(logits.argmax(1) == y)),
                     "mean_confidence": float(softmax(logits).max(1).mean())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "out" / "fashion_mnist"), help="the example bundle (copied)")
    ap.add_argument("--work", default=str(ROOT / "out" / "fm_adapt"))
    ap.add_argument("--member", default="phi0")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--adapt-args", default="", help="extra arguments for edge-committee adapt")
    ap.add_argument("--gain", type=float, default=1.0, help="contrast gain (1.0)")
    ap.add_argument("--brightness", type=float, default=15.0, help="added to every pixel (15)")
    ap.add_argument("--sigma", type=float, default=0.0, help="Gaussian blur in pixels (0)")
    args = ap.parse_args()
    from edge_committee.data.readers import read_idx

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    bundle = work / "bundle"
    shutil.copytree(args.bundle, bundle)
    d = "/usr/share/datasets/fashion-mnist"
    x = read_idx(f"{d}/t10k-images-idx3-ubyte.gz")[..., None]
    y = read_idx(f"{d}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    shifted = camera(x, args.gain, args.brightness, args.sigma)
    np.save(work / "footage.npy", shifted[:5000])  # unlabeled: labels stay here
    halves = {"footage": (shifted[:5000], y[:5000]), "held_out": (shifted[5000:], y[5000:])}
    clean = {"held_out_clean": (x[5000:], y[5000:])}
    before = measure(bundle, {**halves, **clean}, None)
    cmd = [sys.executable, "-m", "edge_committee", "adapt", str(bundle), "--unlabeled", str(work / "footage.npy"),
           "--member", args.member, "--spec", str(SPEC), "--threads", "1", "--json",
           "--keep-student", str(work / "student.onnx"), *args.adapt_args.split()]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # 3 = rejected, reported below
    seconds = time.time() - t0
    if proc.returncode not in (0, 3):
        sys.exit(f"adapt failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout)
    after = measure(bundle, {**halves, **clean}, before["held_out"]["cascade_accuracy"])
    student = student_figures(work / "student.onnx", bundle, args.member, {**halves, **clean})
    doc = {"command": " ".join(["edge-committee"] + cmd[3:]).replace(str(ROOT) + "/", ""),
           "adapt_seconds": round(seconds, 1), "adapt_result": result, "before": before, "after": after,
           "student": student,
           "shift": {"gain": args.gain, "brightness": args.brightness, "gaussian_sigma_px": args.sigma},
           "machine": f"{platform.processor() or platform.machine()}, {platform.platform()}"}
    text = json.dumps(doc, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
