#!/usr/bin/env python
"""FP32 vs FP16 vs INT8 per member with ONNX Runtime on the CPU: latency and accuracy.

Usage::

    python benchmarks/bench_precision.py out/fashion_mnist            # a built bundle
    python benchmarks/bench_precision.py examples/fashion_mnist/committee.yaml   # from the spec

With a bundle, each member's FP32 ONNX comes from ``manifest.json`` (``members[].file`` of the
``fp32`` entries, or ``members/<name>.fp32.onnx``) and the data splits from ``--spec`` (default:
the example's committee.yaml). With a spec, the members are exported first (PyTorch -> ONNX, as
the build does) into ``--work-dir``.

For every member: FP16 and INT8 variants are made with :func:`make_precision_variants` (INT8
calibrated on ``--calib-count`` stratified samples of ``data.train``, or the spec's
``calibration``), gated on the validation split, then timed at batch 1 and 64 (``--warmup``
runs, then a fixed number of iterations, the precisions taking turns; median and p90 of the
wall time of ``infer``) and
evaluated on the test split (``--test-limit`` samples: the first N, default 2000). Writes a
Markdown table and JSON (with the machine and the command) to ``--out`` (.md and .json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = REPO / "examples" / "fashion_mnist" / "committee.yaml"
PRECISIONS = ("fp32", "fp16", "int8")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="a bundle folder (or its manifest.json) or a committee spec .yaml")
    p.add_argument("--spec", type=Path, default=None, help="spec for the data splits of a bundle")
    p.add_argument("--work-dir", type=Path, default=None, help="where variants go (default: temp)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "precision_benchmark",
                   help="output path without suffix (.md and .json are written)")  # fmt: skip
    p.add_argument("--members", default=None, help="comma-separated member names (default: all)")
    g = p.add_argument_group("measurement")
    g.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    g.add_argument("--warmup", type=int, default=10, help="untimed runs per batch size (default 10)")
    g.add_argument("--iters-b1", type=int, default=200, help="timed runs at batch 1 (default 200)")
    g.add_argument("--iters-b64", type=int, default=30, help="timed runs at batch 64 (default 30)")
    g.add_argument("--test-limit", type=int, default=2000, help="test samples (default 2000; 0: all)")
    g.add_argument("--val-limit", type=int, default=0, help="validation samples for the gate (0: all)")
    q = p.add_argument_group("precision")
    q.add_argument("--method", default="minmax", choices=("minmax", "entropy", "percentile"))
    q.add_argument("--calib-count", type=int, default=512, help="calibration samples (default 512)")
    q.add_argument("--tolerance", type=float, default=1.0, help="gate: top-1 points (default 1.0)")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------ inputs
def members_from_bundle(path: Path) -> list[dict]:
    manifest_path = path / "manifest.json" if path.is_dir() else path
    root = manifest_path.parent
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    out: dict[str, dict] = {}
    for m in manifest["members"]:
        base = m.get("base") or m["name"].split(".")[0]
        candidates = [root / "members" / f"{base}.fp32.onnx", root / "members" / f"{base}.onnx"]
        if m.get("precision", "fp32") == "fp32":
            candidates.insert(0, root / m["file"])
        fp32 = next((c for c in candidates if c.is_file()), None)
        if fp32 is None:
            raise SystemExit(f"{manifest_path}: no FP32 ONNX for member {base!r} (tried {candidates})")
        out.setdefault(base, {"name": base, "fp32": fp32, "preprocessing": m["preprocessing"],
                              "macs": m.get("macs")})  # fmt: skip
    return list(out.values())


def bundle_data(path: Path) -> dict:
    manifest_path = path / "manifest.json" if path.is_dir() else path
    return json.loads(manifest_path.read_text(encoding="utf-8")).get("data") or {}


def members_from_spec(spec, work: Path) -> list[dict]:
    from edge_committee.export import export_onnx, load_torch_member

    out = []
    for m in spec.members:
        dest = work / "fp32" / f"{m.name}.onnx"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if m.kind == "onnx":
            dest = Path(m.onnx)
        else:
            model = load_torch_member(m.factory, dict(m.kwargs), m.weights, base_dir=spec.base_dir)
            export_onnx(model, m.preprocessing.input_shape(1)[1:], dest, opset=spec.opset,
                        parity_tolerance=spec.parity_tolerance)  # fmt: skip
        out.append({"name": m.name, "fp32": dest, "preprocessing": m.preprocessing.to_dict(), "macs": None})
    return out


def read_data(spec, args):
    """Validation and test splits (limited as asked) and the calibration sample."""
    from edge_committee.calibration import CalibrationConfig, load_calibration
    from edge_committee.data.readers import read_split

    val = read_split(spec.data["validation"], spec.base_dir, where="data.validation")
    test = read_split(spec.data["test"], spec.base_dir, where="data.test")
    for name, split in (("validation", val), ("test", test)):
        want = (args.manifest_data or {}).get(name, {}).get("sha256")
        if want and want != split.content_hash():
            print(f"warning: data.{name} of the spec differs from the bundle's (sha256)", flush=True)
    if args.val_limit:
        val.images, val.labels = val.images[: args.val_limit], val.labels[: args.val_limit]
    if args.test_limit:
        test.images, test.labels = test.images[: args.test_limit], test.labels[: args.test_limit]
    if spec.calibration is not None:
        cfg = CalibrationConfig.from_dict(spec.calibration, spec.base_dir)
    else:
        which = "train" if "train" in spec.data else "validation"
        src = {"source": {"kind": "split", **spec.data[which]}, "count": args.calib_count, "seed": 0}
        cfg = CalibrationConfig.from_dict(src, spec.base_dir)
    return val, test, load_calibration(cfg)


# ------------------------------------------------------------------------------- measurement
def latencies_ms(paths: dict[str, Path], batch: np.ndarray, warmup: int, iters: int,
                 threads: int) -> dict[str, dict]:
    """Median and p90 wall time of ``infer`` per model, the models timed in turn.

    The models take turns (round-robin, the order rotating each round), so a burst of load from
    other processes on a shared machine hits every precision alike instead of one of them.
    """
    from edge_committee.backend.onnxrt import OnnxrtRunner

    names = list(paths)
    runners = {k: OnnxrtRunner(p, threads=threads) for k, p in paths.items()}
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in runners.values():
        r.activate()
    try:
        for k in names:
            for _ in range(warmup):
                runners[k].infer(batch)
        for i in range(iters):
            for k in names[i % len(names):] + names[: i % len(names)]:
                t0 = time.perf_counter()
                runners[k].infer(batch)
                times[k].append((time.perf_counter() - t0) * 1e3)
    finally:
        for r in runners.values():
            r.deactivate()
    return {
        k: {"median": float(np.median(t)), "p90": float(np.percentile(t, 90)), "iters": iters}
        for k, t in times.items()
    }


def bench_member(m: dict, val, test, calib, args, work: Path) -> list[dict]:
    from edge_committee.cost import count_macs
    from edge_committee.precision import evaluate_onnx, make_precision_variants, top1_accuracy
    from edge_committee.spec.preprocess import Preprocessing

    pp = Preprocessing.from_dict(m["preprocessing"])
    variants = make_precision_variants(
        m["fp32"], pp, val, calib, precisions=list(PRECISIONS), out_dir=work / "variants",
        member_name=m["name"], tolerance_pts=args.tolerance, int8_method=args.method,
        threads=args.threads, retry_int8_without_sensitive=False,
    )  # fmt: skip
    macs = m["macs"] or count_macs(str(m["fp32"])).total_macs
    x64 = pp(test.images[:64])
    paths = {v.precision: v.path for v in variants}
    b1 = latencies_ms(paths, x64[:1], args.warmup, args.iters_b1, args.threads)
    b64 = latencies_ms(paths, x64, max(2, args.warmup // 3), args.iters_b64, args.threads)
    rows = []
    for v in variants:
        logits = evaluate_onnx(v.path, test.images, pp, args.threads, 500, desc=f"{m['name']} {v.precision} test")
        rows.append({
            "member": m["name"], "macs": int(macs), "precision": v.precision,
            "file_kb": round(v.path.stat().st_size / 1024, 1),
            "val_accuracy": v.val_accuracy, "test_accuracy": top1_accuracy(logits, test.labels),
            "accepted": v.accepted, "reason": v.reason, "max_abs_diff_vs_fp32": v.max_abs_diff,
            "batch1_ms": b1[v.precision], "batch64_ms": b64[v.precision],
            "int8_layers": len(v.quantization["qdq"]["int8_layers"]) if v.quantization else None,
        })  # fmt: skip
        print(f"{m['name']:>8} {v.precision}: test {rows[-1]['test_accuracy']:.2f}%  "
              f"b1 {rows[-1]['batch1_ms']['median']:.3f} ms  b64 {rows[-1]['batch64_ms']['median']:.2f} ms  "
              f"{'accepted' if v.accepted else 'REJECTED'}", flush=True)  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------- reporting
def machine() -> dict:
    import onnxruntime

    model = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {
        "cpu": model, "cores": os.cpu_count(), "os": platform.platform(),
        "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }  # fmt: skip


def describe_source(src: dict) -> str:
    """``train-images-idx3-ubyte.gz[0:50000]`` style, for the table's caption."""
    name = Path(str(src.get("images") or src.get("path") or "?")).name
    if "start" in src or "stop" in src:
        name += f"[{src.get('start') or 0}:{src.get('stop') if src.get('stop') is not None else ''}]"
    return f"{src.get('kind')} {name}"


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        "# Precision benchmark: FP32 vs FP16 vs INT8 (ONNX Runtime, CPU)",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores "
        f"(shared with other work), onnxruntime {result['machine']['onnxruntime']}, "
        f"{s['threads']} intra-op thread(s).  ",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}. Source: `{result['source']}`.",
        "",
        f"Accuracy: top-1 on the validation split ({s['val_samples']} samples; the gate, tolerance "
        f"{s['tolerance']:.1f} points) and on the first {s['test_samples']} samples of the test split. "
        f"INT8: {s['method']} calibration on {s['calib_samples']} stratified samples (seed 0) of "
        f"`{s['calib_source']}`. Latency: wall time of one `infer` call, {s['warmup']} warm-up runs, "
        f"then {s['iters_b1']} (batch 1) / {s['iters_b64']} (batch 64) timed runs, the three "
        "precisions of a member taking turns (so load from other processes hits them alike); "
        "median and p90 in ms.",
        "",
        "| member | MACs | precision | val top-1 % | test top-1 % | gate | b1 median | b1 p90 "
        "| b64 median | b64 p90 | b64 speed-up vs FP32 | file KB |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    ref = {r["member"]: r for r in result["rows"] if r["precision"] == "fp32"}
    for r in result["rows"]:
        speed = ref[r["member"]]["batch64_ms"]["median"] / r["batch64_ms"]["median"]
        gate = "accepted" if r["accepted"] else "**rejected**"
        lines.append(
            f"| {r['member']} | {r['macs'] / 1e6:.2f} M | {r['precision']} | {r['val_accuracy']:.2f} "
            f"| {r['test_accuracy']:.2f} | {gate} | {r['batch1_ms']['median']:.3f} "
            f"| {r['batch1_ms']['p90']:.3f} | {r['batch64_ms']['median']:.2f} "
            f"| {r['batch64_ms']['p90']:.2f} | {speed:.2f}x | {r['file_kb']:.0f} |"
        )
    rejected = [r for r in result["rows"] if not r["accepted"]]
    if rejected:
        lines += ["", "Rejected by the accuracy gate:", ""]
        lines += [f"- {r['member']} {r['precision']}: {r['reason']}" for r in rejected]
    lines += ["", result.get("notes", ""), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from edge_committee.calibration._atomic import write_bytes_atomic, write_json_atomic
    from edge_committee.spec.committee import load_spec

    src = Path(args.source)
    is_spec = src.suffix in (".yaml", ".yml")
    spec = load_spec(src if is_spec else (args.spec or DEFAULT_SPEC))
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        work = args.work_dir or Path(tmp)
        members = members_from_spec(spec, work) if is_spec else members_from_bundle(src)
        args.manifest_data = None if is_spec else bundle_data(src)
        if args.members:
            keep = set(args.members.split(","))
            members = [m for m in members if m["name"] in keep]
        val, test, calib = read_data(spec, args)
        started = time.time()
        rows = [r for m in members for r in bench_member(m, val, test, calib, args, work)]
    given = sys.argv[1:] if argv is None else list(argv)
    cmd = " ".join(shlex.quote(a) for a in ["python", "benchmarks/bench_precision.py", *given])
    result = {
        "command": cmd,
        "source": str(src),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "settings": {
            "threads": args.threads, "warmup": args.warmup, "iters_b1": args.iters_b1,
            "iters_b64": args.iters_b64, "method": args.method, "tolerance": args.tolerance,
            "val_samples": len(val), "test_samples": len(test), "calib_samples": len(calib),
            "calib_source": describe_source(calib.record.source),
        },  # fmt: skip
        "seconds": round(time.time() - started, 1),
        "rows": rows,
        "notes": (
            "Notes. (1) ONNX Runtime's x86 CPU provider has few float16 kernels: it runs an FP16 "
            "file as float32 ops with float16 weights (it inserts Casts and removes those between "
            "consecutive ops), so FP16 latency here is about FP32's and the FP16 *test* column "
            "reflects float16 weights only; the FP16 *validation* column (the gate) comes from "
            "`fp16_emulation`, which rounds every tensor to float16 as the GPU stores it. "
            "(2) INT8 runs through ONNX Runtime's int8 kernels where it fuses the Q/DQ pairs "
            "(QLinearConv); its CPU speed says little about TensorRT's. (3) No TensorRT engine "
            "was built (no builder installs here): these figures show that the variants are valid, "
            "run, and keep their accuracy; GPU speed-ups need a build on the target."
        ),
    }
    out = args.out
    write_json_atomic(out.with_suffix(".json"), result)
    write_bytes_atomic(out.with_suffix(".md"), markdown(result).encode("utf-8"))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
