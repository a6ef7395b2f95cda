"""The seeds' other committees on the Fashion-MNIST example: learned combiner and self-cascades.

Reads built bundles' cached outputs (no member is run here) and writes the figures of
``docs/committees.md``:

- ``--learned DIR``: a bundle of ``examples/fashion_mnist/committee_learned.yaml`` (the family
  plus the bagged members). Average vs learned combination, on the test split, for the bagged
  set and for the compound-scaled family (ensembles of all their members); the learned
  combiner's in-sample vs out-of-fold validation accuracy; plain vs learned cascades at the
  largest member's validation accuracy and under the example's budget.
- ``--self DIR``: a bundle of ``committee_self.yaml``. The cheapest self-cascade of phi5
  (phi5 at 16..32 px) vs the cheapest multi-model cascade (phi0..phi5) reaching the same
  validation accuracy.

    python benchmarks/committees.py --learned out/fm_learned --self out/fm_self --json docs/committees.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def load(bundle: Path):
    from edge_committee.bundle import read_manifest

    m = read_manifest(bundle)
    with np.load(bundle / "outputs.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return m, arrays


def data_for(m: dict, arrays: dict, names: list[str]):
    from edge_committee.select import SelectionData

    macs = {e["name"]: e["macs"] for e in m["members"]}
    return SelectionData({n: arrays[f"{n}/validation"] for n in names}, {n: arrays[f"{n}/test"] for n in names},
                         {n: macs[n] for n in names}, arrays["labels/validation"], arrays["labels/test"])


def acc(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(p.argmax(1) == y))


def average_vs_learned(arrays: dict, names: list[str], folds: int = 5) -> dict:
    """Ensemble of ``names``: plain mean vs learned combiner (fitted on validation), test accuracy."""
    from edge_committee.cascade import learned, reference

    yv, yt = arrays["labels/validation"], arrays["labels/test"]
    val = [arrays[f"{n}/validation"] for n in names]
    test = [arrays[f"{n}/test"] for n in names]
    cf = learned.cross_fit(val, yv, folds=folds, members=names)
    return {
        "members": names,
        "member_test_accuracy": {n: acc(x, yt) for n, x in zip(names, test)},
        "average_test_accuracy": acc(reference.ensemble(test), yt),
        "learned_test_accuracy": acc(cf.combiner.probs(test), yt),
        "average_val_accuracy": acc(reference.ensemble(val), yv),
        "learned_val_accuracy_out_of_fold": acc(cf.oof_probs(val), yv),
        "learned_val_accuracy_in_sample": acc(cf.combiner.probs(val), yv),
        "weights": np.round(cf.combiner.weights.mean(axis=1), 3).tolist(),  # per member, mean over classes
    }


def pick(data, objective: str, budget, kinds, combiner, max_len: int) -> dict:
    from edge_committee.errors import EdgeCommitteeError
    from edge_committee.select import select_cascade

    try:
        c = select_cascade(data, objective, budget, max_len=max_len, kinds=kinds, combiner=combiner).chosen
    except EdgeCommitteeError as exc:
        return {"none": str(exc)}
    return {"committee": c.label, "kind": c.kind, "val_accuracy": c.val_accuracy, "test_accuracy": c.test_accuracy,
            "mean_macs_val": c.mean_cost, "mean_macs_test": c.test_mean_cost, "worst_macs": c.worst_cost,
            "thresholds": list(c.thresholds)}


def learned_section(bundle: Path) -> dict:
    from edge_committee.select.learned import CombinerConfig

    m, arrays = load(bundle)
    names = [e["name"] for e in m["members"]]
    bags = [n for n in names if n.startswith("bag")]
    family = [n for n in names if n.startswith("phi")]
    macs = {e["name"]: e["macs"] for e in m["members"]}
    largest = max(family, key=lambda n: macs[n])
    data = data_for(m, arrays, names)
    target = float(np.mean(arrays[f"{largest}/validation"].argmax(1) == arrays["labels/validation"]))
    cfg = CombinerConfig(**{k: v for k, v in (m["selection"].get("combiner") or {}).items() if k != "kind"})
    t0 = time.time()
    out = {
        "bundle_chosen": {k: m["cascade"].get(k) for k in ("kind", "members", "thresholds", "val_accuracy",
                                                           "test_accuracy", "mean_cost", "test_mean_cost",
                                                           "worst_cost")},
        "bagged": average_vs_learned(arrays, bags),
        "family": average_vs_learned(arrays, family),
        "target": {"member": largest, "val_accuracy": target},
        "at_target_average": pick(data, "accuracy", target, ["single", "ensemble", "cascade"], None, 4),
        "at_target_learned": pick(data, "accuracy", target, ["learned_ensemble", "learned_cascade"], cfg, 4),
        "budget_largest_average": pick(data, "worst_cost", macs[largest], ["single", "ensemble", "cascade"], None, 4),
        "budget_largest_learned": pick(data, "worst_cost", macs[largest], ["learned_ensemble", "learned_cascade"],
                                       cfg, 4),
    }
    out["selection_seconds"] = round(time.time() - t0, 1)
    out["runtime_check"] = runtime_check(bundle, m, arrays)
    return out


def runtime_check(bundle: Path, m: dict, arrays: dict) -> dict:
    """The bundle run by the runtime (ONNX Runtime members + learned gate) on the test images vs the
    NumPy reference over its cached outputs: label, exit-stage mismatches and max |probs| difference."""
    import edge_committee as ec
    from edge_committee.bundle.manifest import resolve_in_bundle
    from edge_committee.cascade import learned, reference
    from edge_committee.cascade.learned_onnx import combiner_from_onnx
    from edge_committee.data.readers import read_idx

    c = m["cascade"]
    logits = [arrays[f"{n}/test"] for n in c["members"]]
    if c.get("combiner"):
        stages = [combiner_from_onnx(resolve_in_bundle(bundle, f)) for f in c["combiner"]["files"]]
        want = learned.run_learned_cascade(logits, c["thresholds"], stages, c["confidence"])
    else:
        want = reference.run_cascade(logits, c["thresholds"], c["confidence"])
    x = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
    t0 = time.time()
    with ec.load(bundle, threads=1) as model:
        pred = model.predict(x)
        backend = model.gate_backend
    return {"samples": len(x), "gate": backend, "seconds": round(time.time() - t0, 1),
            "label_mismatches": int((pred.labels != want.label).sum()),
            "exit_stage_mismatches": int((pred.exit_stage != want.exit_stage).sum()),
            "max_abs_prob_diff": float(np.abs(pred.probs - want.probs).max()),
            "test_accuracy": float(np.mean(pred.labels == arrays["labels/test"]))}


def self_section(bundle: Path) -> dict:
    m, arrays = load(bundle)
    names = [e["name"] for e in m["members"]]
    self_names = [n for n in names if n == "phi5" or n.startswith("phi5-r")]
    multi = [n for n in names if "-r" not in n]
    y = arrays["labels/validation"]
    out = {"members": {n: {"macs": e["macs"], "val_accuracy": e["accuracy"].get("validation"),
                           "test_accuracy": e["accuracy"].get("test")}
                       for e in m["members"] for n in [e["name"]]}}
    rows = []
    phi5 = float(np.mean(arrays["phi5/validation"].argmax(1) == y))
    for target in (phi5, 0.94, 0.93):
        s = pick(data_for(m, arrays, self_names), "accuracy", target, ["single", "cascade"], None, 4)
        mm = pick(data_for(m, arrays, multi), "accuracy", target, ["single", "cascade"], None, 4)
        rows.append({"target_val_accuracy": target, "self_cascade": s, "multi_model": mm})
    out["at_equal_accuracy"] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--learned", help="bundle of committee_learned.yaml")
    ap.add_argument("--self", dest="self_bundle", help="bundle of committee_self.yaml")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    doc = {"machine": f"{platform.machine()}, {platform.platform()}"}
    if args.learned:
        doc["learned"] = learned_section(Path(args.learned))
    if args.self_bundle:
        doc["self_cascade"] = self_section(Path(args.self_bundle))
    text = json.dumps(doc, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
