#!/usr/bin/env python
"""The fused cascade file vs the Python runtime vs the largest member, ONNX Runtime CPU, 1 thread.

Usage::

    python benchmarks/bench_fused.py out/fashion_mnist            # the example bundle

1. Equality: ``export-onnx`` writes the bundle's cascade (compact and mask forms); plain
   ``onnxruntime`` runs it on every image of ``--images`` (default: the Fashion-MNIST test
   split) in one batch and in batches of 64; labels, exit stages and flags are compared with
   ``edge_committee.load(bundle).predict``. Samples whose confidence at a stage they reached lies
   within 1e-5 of that stage's threshold are counted (a float32 rounding could flip them).
2. Latency, all configurations in one process, taking turns image by image (in a fresh random
   order each time, so load from other processes and cold caches hit them alike): at batch 1 for images the runtime
   exits at each stage (``--per-stage`` images each), and at batch 64 (``--batches`` fixed random
   batches). Configurations: the fused file (compact, mask), the Python runtime (``predict``),
   the members the image runs, back to back on already preprocessed inputs ("members' own
   time"), the first member as a one-stage fused file, and the largest member alone. Wall time
   and thread CPU time of each call; medians and p90 in microseconds.

Writes ``--out``.md and ``--out``.json (machine, command, figures).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FMNIST_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
NEAR = 1e-5


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--images", type=Path, default=FMNIST_TEST, help="IDX file or .npy of uint8 images")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "fused_benchmark", help="output path without suffix")
    p.add_argument("--per-stage", type=int, default=32, help="batch-1 images per exit stage (default 32)")
    p.add_argument("--rounds", type=int, default=20, help="batch-1 rounds over those images (default 20)")
    p.add_argument("--batches", type=int, default=16, help="batch-64 batches (default 16)")
    p.add_argument("--rounds-b64", type=int, default=4, help="rounds over the batch-64 batches (default 4)")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs per configuration (default 20)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- inputs
def read_images(path: Path) -> np.ndarray:
    from edge_committee.data.readers import read_idx

    x = np.load(path, allow_pickle=False) if path.suffix == ".npy" else read_idx(path)
    return x[..., None] if x.ndim == 3 else x


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def session(path_or_bytes, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path_or_bytes, opts, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------- equality
def stage_confidences(model, images: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per stage, every sample's confidence of the running mean (NaN where it did not reach it)."""
    from edge_committee.cascade.reference import GateState, confidence, gate_step

    logits = [model.executor.runners[k].infer(pp(images)) for k, pp in enumerate(model.preprocessing)]
    k_total, n = len(logits), len(images)
    state = GateState.start(n, logits[0].shape[1])
    confs = []
    for k, lg in enumerate(logits):
        conf = np.full(n, np.nan, np.float32)
        idx = state.active
        if idx.size:
            gate_step(state, lg[idx], k, k_total, model.thresholds[k] if k < k_total - 1 else np.inf,
                      model.confidence)
            conf[idx] = confidence(state.prob_sum[idx] / np.float32(k + 1), model.confidence)
        confs.append(conf)
    return np.asarray(confs), logits


def near_threshold(model, confs: np.ndarray) -> np.ndarray:
    near = np.zeros(confs.shape[1], bool)
    for k, t in enumerate(model.thresholds):
        near |= np.abs(confs[k].astype(np.float64) - t) < NEAR
    return near


def compare(out: dict, ref, near: np.ndarray) -> dict:
    bad_label, bad_stage = out["labels"] != ref.labels, out["exit_stage"] != ref.exit_stage
    agree = ~(bad_label | bad_stage)
    return {
        "label_mismatches": int(bad_label.sum()),
        "exit_stage_mismatches": int(bad_stage.sum()),
        "flag_mismatches": int((out["flags"] != ref.flags).sum()),
        "mismatches_near_threshold": int(((bad_label | bad_stage) & near).sum()),
        "max_abs_conf_diff": float(np.nanmax(np.abs(out["confidence"][agree] - ref.confidence[agree]))),
        "max_abs_prob_diff": float(np.abs(out["probs"][agree] - ref.probs[agree]).max()),
        "exit_histogram": np.bincount(out["exit_stage"]).tolist(),
    }


def run_fused(sess, images: np.ndarray, chunk: int | None = None) -> dict:
    names = [o.name for o in sess.get_outputs()]
    if chunk is None:
        return dict(zip(names, sess.run(None, {"images": images})))
    parts = [sess.run(None, {"images": images[i:i + chunk]}) for i in range(0, len(images), chunk)]
    return {n: np.concatenate([p[j] for p in parts]) for j, n in enumerate(names)}


def equality(model, files: dict, images: np.ndarray) -> tuple[dict, np.ndarray]:
    ref = model.predict(images)
    confs, _ = stage_confidences(model, images)
    near = near_threshold(model, confs)
    results = {"samples": int(len(images)), "near_threshold_samples": int(near.sum()),
               "reference_exit_histogram": np.bincount(ref.exit_stage).tolist()}
    for form, path in files.items():
        sess = session(str(path))
        results[form] = {"one_batch": compare(run_fused(sess, images), ref, near),
                         "batches_of_64": compare(run_fused(sess, images, 64), ref, near)}
    return results, ref.exit_stage


# ---------------------------------------------------------------------------------------------- latency
def timed(fn) -> tuple[float, float]:
    """(wall, thread CPU) microseconds of one call."""
    w, c = time.perf_counter_ns(), time.thread_time_ns()
    fn()
    return (time.perf_counter_ns() - w) / 1e3, (time.thread_time_ns() - c) / 1e3


def interleave(configs: dict, inputs: list, rounds: int, warmup: int) -> dict:
    """configs: name -> fn(input); every input runs every config each round, in a random order.

    A fresh random order per input (not a rotation, which keeps each config's predecessor) so every
    config follows every other equally often: a run after the largest member finds cold caches.
    """
    rng = np.random.default_rng(0)
    names = list(configs)
    for name in names:
        for i in range(warmup):
            configs[name](inputs[i % len(inputs)])
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for _ in range(rounds):
        for item in inputs:
            for n in rng.permutation(names):
                w, c = timed(lambda: configs[n](item))
                wall[n].append(w)
                cpu[n].append(c)
    return {n: {"wall_median_us": float(np.median(wall[n])), "wall_p90_us": float(np.percentile(wall[n], 90)),
                "cpu_median_us": float(np.median(cpu[n])), "cpu_p90_us": float(np.percentile(cpu[n], 90)),
                "calls": len(wall[n])} for n in names}


class Members:
    """Each member alone on already preprocessed inputs (its own ONNX Runtime session)."""

    def __init__(self, model) -> None:
        self.sessions = [session(str(model.member_path(n))) for n in model.members]
        self.inputs = [s.get_inputs()[0].name for s in self.sessions]
        self.pp = model.preprocessing

    def prepared(self, images: np.ndarray, upto: int) -> list:
        return [(k, self.pp[k](images)) for k in range(upto + 1)]

    def run(self, prepared: list) -> None:
        for k, x in prepared:
            self.sessions[k].run(None, {self.inputs[k]: x})


def latency(model, files: dict, one_stage: Path, largest: str, images: np.ndarray, stages: np.ndarray,
            args) -> dict:
    from edge_committee.spec.preprocess import Preprocessing

    fused = {form: session(str(p)) for form, p in files.items()}
    first = session(str(one_stage))
    members = Members(model)
    big = session(str(model.root / model.by_name[largest]["file"]))
    big_pp = Preprocessing.from_dict(model.by_name[largest]["preprocessing"])
    big_in = big.get_inputs()[0].name
    out = {"batch1": {}, "batch64": {}}
    for k in range(len(model.members)):
        idx = np.flatnonzero(stages == k)[: args.per_stage]
        if idx.size == 0:
            continue
        items = [{"raw": images[i:i + 1], "members": members.prepared(images[i:i + 1], k),
                  "big": big_pp(images[i:i + 1])} for i in idx]
        configs = {f"fused {form}": (lambda it, s=s: s.run(None, {"images": it["raw"]})) for form, s in fused.items()}
        configs["python runtime"] = lambda it: model.predict(it["raw"])
        configs["members' own time"] = lambda it: members.run(it["members"])
        if k == 0:
            configs["first member as one-stage fused file"] = lambda it: first.run(None, {"images": it["raw"]})
        configs[f"largest member alone ({largest})"] = lambda it: big.run(None, {big_in: it["big"]})
        out["batch1"][f"exit at stage {k}"] = {"images": int(idx.size),
                                               "results": interleave(configs, items, args.rounds, args.warmup)}
    rng = np.random.default_rng(0)
    batches = [np.sort(rng.choice(len(images), 64, replace=False)) for _ in range(args.batches)]
    items = [{"raw": images[b], "big": big_pp(images[b])} for b in batches]
    configs = {f"fused {form}": (lambda it, s=s: s.run(None, {"images": it["raw"]})) for form, s in fused.items()}
    configs["python runtime"] = lambda it: model.predict(it["raw"])
    configs[f"largest member alone ({largest})"] = lambda it: big.run(None, {big_in: it["big"]})
    out["batch64"] = {"batches": len(batches), "exits": np.bincount(np.concatenate([stages[b] for b in batches]),
                                                                    minlength=len(model.members)).tolist(),
                      "results": interleave(configs, items, args.rounds_b64, min(args.warmup, 3))}
    return out


# ---------------------------------------------------------------------------------------------- report
def overheads(lat: dict) -> dict:
    """Fused / members' own time - 1, per exit stage, from the medians (wall and CPU)."""
    out = {}
    for stage, block in lat["batch1"].items():
        r = block["results"]
        own = r["members' own time"]
        for name in [n for n in r if n.startswith("fused") or n == "python runtime"]:
            out.setdefault(stage, {})[name] = {
                "wall": r[name]["wall_median_us"] / own["wall_median_us"] - 1,
                "cpu": r[name]["cpu_median_us"] / own["cpu_median_us"] - 1,
            }
    return out


def markdown(report: dict) -> str:
    lines = ["# Fused cascade benchmark: one ONNX file vs the Python runtime (ONNX Runtime CPU, 1 thread)", "",
             f"Machine: {report['machine']}.  ",
             f"Command: `{report['command']}`  ",
             f"Date: {report['date']}. Bundle: `{report['bundle']}`, cascade "
             f"{' -> '.join(report['cascade']['members'])} at {report['cascade']['thresholds']} "
             f"({report['cascade']['confidence']}).", "",
             "How: every configuration in one process, ONNX Runtime CPU with 1 intra-op thread, taking turns image "
             "by image (in a fresh random order each time). *Members' own time*: the members the image runs, back to "
             "back, each in its own session on an already preprocessed input (no preprocessing, no gate, no Python "
             "loop). "
             "*Wall* is `perf_counter` around one call; *CPU* is the calling thread's CPU time (ONNX Runtime runs "
             "on the calling thread with 1 thread), which other processes on the shared cores disturb less.", "",
             "## Equality with `edge_committee.load(bundle).predict`", "",
             f"{report['equality']['samples']} images; reference exits per stage "
             f"{report['equality']['reference_exit_histogram']}; samples within {NEAR:g} of a threshold at a stage "
             f"they reached: {report['equality']['near_threshold_samples']}.", "",
             "| form | run as | label mismatches | exit-stage mismatches | flag mismatches | of those near a threshold "
             "| max abs conf diff | max abs prob diff |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for form in ("compact", "mask"):
        for how in ("one_batch", "batches_of_64"):
            e = report["equality"][form][how]
            lines.append(f"| {form} | {how.replace('_', ' ')} | {e['label_mismatches']} | "
                         f"{e['exit_stage_mismatches']} | {e['flag_mismatches']} | {e['mismatches_near_threshold']} | "
                         f"{e['max_abs_conf_diff']:.2g} | {e['max_abs_prob_diff']:.2g} |")
    lines += ["", "## Latency at batch 1, by exit stage (µs per image)", "",
              "| exit stage | configuration | wall median | wall p90 | CPU median | CPU p90 |",
              "|---|---|---:|---:|---:|---:|"]
    for stage, block in report["latency"]["batch1"].items():
        for name, r in block["results"].items():
            lines.append(f"| {stage} ({block['images']} images) | {name} | {r['wall_median_us']:.0f} | "
                         f"{r['wall_p90_us']:.0f} | {r['cpu_median_us']:.0f} | {r['cpu_p90_us']:.0f} |")
    lines += ["", "Overhead over the members' own time (ratio of medians - 1; target: fused ≤ +5%):", "",
              "| exit stage | configuration | wall | CPU |", "|---|---|---:|---:|"]
    for stage, block in report["overheads"].items():
        for name, o in block.items():
            lines.append(f"| {stage} | {name} | {o['wall']:+.0%} | {o['cpu']:+.0%} |")
    b64 = report["latency"]["batch64"]
    lines += ["", f"## Latency at batch 64 (ms per batch; {b64['batches']} random batches, exits per stage "
                  f"{b64['exits']})", "", "| configuration | wall median | wall p90 | CPU median | CPU p90 |",
              "|---|---:|---:|---:|---:|"]
    for name, r in b64["results"].items():
        lines.append(f"| {name} | {r['wall_median_us'] / 1e3:.2f} | {r['wall_p90_us'] / 1e3:.2f} | "
                     f"{r['cpu_median_us'] / 1e3:.2f} | {r['cpu_p90_us'] / 1e3:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import onnxruntime as ort

    import edge_committee as ec
    from edge_committee.export.cascade_onnx import CascadeDef
    from edge_committee.export.cascade_onnx.export import export_cascade_onnx

    images = read_images(args.images)
    load_before = os.getloadavg()[0]
    model = ec.load(args.bundle, threads=1)
    size = tuple(images.shape[1:4])  # (H, W, C)
    with tempfile.TemporaryDirectory(prefix="ec-bench-fused-") as tmp:
        files = {form: export_cascade_onnx(args.bundle, Path(tmp) / f"{form}.onnx", source_size=size, form=form)[0]
                 for form in ("compact", "mask")}
        one = export_cascade_onnx(args.bundle, Path(tmp) / "first.onnx", source_size=size,
                                  cascade=CascadeDef(model.members[:1], [], model.confidence, "single"))[0]
        largest = max(model.manifest["members"], key=lambda m: m["macs"])["name"]
        eq, stages = equality(model, files, images)
        lat = latency(model, files, one, largest, images, stages, args)
    report = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores (shared with other work; load average "
                   f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), "
                   f"{platform.python_implementation()} {platform.python_version()}, onnxruntime {ort.__version__}",
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO), *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "bundle": str(args.bundle),
        "cascade": {"members": model.members, "thresholds": model.thresholds, "confidence": model.confidence},
        "equality": eq, "latency": lat, "overheads": overheads(lat),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
