#!/usr/bin/env python
"""A learned committee on every CPU runtime against the NumPy reference of the learned combination.

Usage::

    python benchmarks/learned_runtimes.py out/fm_learned        # built from committee_learned.yaml

The reference is :func:`edge_committee.cascade.learned.run_learned_cascade` over the members'
logits (ONNX Runtime on each member's file, its preprocessing in NumPy) with the stage combiners of
the bundle's ``combiner/stage<k>.onnx``. Each runtime predicts the raw images of ``--images``
(default: the Fashion-MNIST test split) through ``ec.load(bundle, backend=...)``: the host loop
(``onnxrt``), the fused file (``onnxrt-fused``, compact and mask forms) and the device runtime
eagerly on the CPU (``torch-cuda`` with ``device="cpu"``, when onnx2torch is installed). Printed per
runtime: label, exit-stage and flag mismatches, the largest probability difference, samples whose
confidence at a stage they reached lies within 1e-5 of its threshold (where float rounding could
flip an exit), and the wall time of one ``predict`` of every image (one run, after a warm-up; the
machine's other load counts in it). ``--json`` writes the same.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

FMNIST_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
NEAR = 1e-5


def read_images(path: Path) -> np.ndarray:
    from edge_committee.data.readers import read_idx

    x = np.load(path, allow_pickle=False) if path.suffix == ".npy" else read_idx(path)
    return x[..., None] if x.ndim == 3 else x


def reference(bundle: Path, images: np.ndarray):
    """(CascadeResult of run_learned_cascade, near-threshold mask, thresholds) on ``images``."""
    import onnxruntime as ort

    from edge_committee.bundle import read_manifest
    from edge_committee.cascade.learned import LearnedGateState, learned_gate_step, run_learned_cascade
    from edge_committee.cascade.learned_onnx import combiner_from_onnx
    from edge_committee.cascade.reference import confidence
    from edge_committee.spec.preprocess import Preprocessing

    m = read_manifest(bundle)
    c = m["cascade"]
    if not c.get("combiner"):
        sys.exit(f"{bundle}: the chosen committee has no learned combiner (kind {c.get('kind')})")
    by_name = {e["name"]: e for e in m["members"]}
    logits = []
    for name in c["members"]:
        sess = ort.InferenceSession(str(bundle / by_name[name]["file"]), providers=["CPUExecutionProvider"])
        x = Preprocessing.from_dict(by_name[name]["preprocessing"])(images)
        if sess.get_inputs()[0].type == "tensor(float16)":
            x = x.astype(np.float16)
        logits.append(sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32))
    combiners = [combiner_from_onnx(bundle / f) for f in c["combiner"]["files"]]
    ref = run_learned_cascade(logits, c["thresholds"], combiners, c["confidence"])
    state, near, k_total = LearnedGateState.start(len(images), len(m["labels"])), np.zeros(len(images), bool), len(logits)
    for k in range(k_total):
        idx = state.active
        t = c["thresholds"][k] if k < k_total - 1 else np.inf
        learned_gate_step(state, logits[k][idx], k, k_total, t, c["confidence"], combiners[k])
        near[idx] |= np.abs(confidence(state.prob_sum[idx], c["confidence"]).astype(np.float64) - t) < NEAR
    return ref, near, c


def runtimes() -> list[tuple[str, str, dict]]:
    out = [("host loop (onnxrt)", "onnxrt", {"threads": 1}),
           ("fused file, compact (onnxrt-fused)", "onnxrt-fused", {"threads": 1, "form": "compact"}),
           ("fused file, mask (onnxrt-fused)", "onnxrt-fused", {"threads": 1, "form": "mask"})]
    if importlib.util.find_spec("onnx2torch") and importlib.util.find_spec("torch"):
        out.append(("device runtime on the CPU (torch-cuda, device=cpu)", "torch-cuda",
                    {"device": "cpu", "max_batch": 256}))
    return out


def compare(bundle: Path, images: np.ndarray) -> dict:
    import edge_committee as ec

    ref, near, c = reference(bundle, images)
    rows = []
    for name, backend, options in runtimes():
        with ec.load(bundle, backend=backend, **options) as model:
            model.predict(images[:8])  # warm-up: sessions, the fused model, the stage buffers
            start = time.perf_counter()
            pred = model.predict(images)
            wall = time.perf_counter() - start
        rows.append({
            "runtime": name,
            "label_mismatches": int((pred.labels != ref.label).sum()),
            "exit_stage_mismatches": int((pred.exit_stage != ref.exit_stage).sum()),
            "flag_mismatches": int((pred.flags != ref.flag).sum()),
            "max_prob_diff": float(np.abs(pred.probs.astype(np.float64) - ref.probs).max()),
            "wall_s": round(wall, 2),
        })
    return {"bundle": str(bundle), "committee": {k: c[k] for k in ("kind", "members", "thresholds", "confidence")},
            "images": len(images), "near_threshold": int(near.sum()),
            "exit_histogram": np.bincount(ref.exit_stage, minlength=len(c["members"])).tolist(), "runtimes": rows,
            "machine": f"{platform.machine()}, {platform.python_version()}"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--images", type=Path, default=FMNIST_TEST, help="idx(.gz) or .npy of uint8 images")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    images = read_images(args.images)[: args.limit]
    res = compare(args.bundle, images)
    print(f"{res['committee']['kind']} {' > '.join(res['committee']['members'])} at {res['committee']['thresholds']}, "
          f"{res['images']} images, exits per stage {res['exit_histogram']}, "
          f"{res['near_threshold']} within {NEAR:g} of a threshold")
    print("| runtime | label / exit / flag mismatches | max abs prob diff | wall s |")
    print("|---|---|---|---|")
    for r in res["runtimes"]:
        print(f"| {r['runtime']} | {r['label_mismatches']} / {r['exit_stage_mismatches']} / {r['flag_mismatches']} "
              f"| {r['max_prob_diff']:.2g} | {r['wall_s']} |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
