"""Streamed evaluation of a large image folder: peak RSS and images/s.

Generates N random 256x256 RGB JPEGs in 10 class sub-folders (once; reused), then evaluates a
small ONNX member over the folder exactly as ``edge-committee build`` does
(``read_split`` + ``member_outputs`` with the cache off): each batch is decoded, preprocessed
(PIL-exact bilinear 256 -> 64, ImageNet mean/std) and run before the next one is read.
Peak RSS is the process's ``ru_maxrss``.

    python benchmarks/bench_streamed_evaluation.py --images 20000 --folder /tmp/stream20k --json docs/streamed_evaluation.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np


def make_folder(folder: Path, n: int, size: int = 256) -> None:
    from PIL import Image

    done = folder / ".complete"
    if done.is_file() and int(done.read_text()) == n:
        return
    rng = np.random.default_rng(0)
    for i in range(n):
        d = folder / f"c{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # smooth content, realistic JPEG sizes
        im = Image.fromarray(base).resize((size, size), Image.BILINEAR)
        im.save(d / f"{i:06d}.jpg", quality=90)
    done.write_text(str(n))


def make_member(path: Path, size: int = 64) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(0, 0.01, (10, 3 * size * size)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["f"]), helper.make_node("Gemm", ["f", "W"], ["logits"], transB=1)],
        "lin", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--folder", default="/tmp/edge_committee_stream")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    folder = Path(args.folder)
    t0 = time.perf_counter()
    make_folder(folder, args.images)
    gen_s = time.perf_counter() - t0
    member = folder.parent / "stream_member.onnx"
    make_member(member)

    from edge_committee.data.readers import read_split
    from edge_committee.evaluate import member_outputs
    from edge_committee.spec.preprocess import Preprocessing

    labels = [f"c{i}" for i in range(10)]
    pp = Preprocessing.from_dict({"size": [64, 64], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t1 = time.perf_counter()
    split = read_split({"format": "folder", "path": str(folder)}, Path("."), labels)
    h0 = time.perf_counter()
    split.content_hash()
    hash_s = time.perf_counter() - h0
    logits = member_outputs(member, pp, split, None, args.batch_size, threads=args.threads, desc="stream")
    total_s = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "images": len(split), "image_size": [256, 256], "batch_size": args.batch_size, "threads": args.threads,
        "peak_rss_mb": round(peak, 1), "rss_before_eval_mb": round(rss0, 1),
        "images_per_s": round(len(split) / total_s, 1), "eval_s": round(total_s, 2), "hash_s": round(hash_s, 2),
        "generate_s": round(gen_s, 1), "logits_shape": list(logits.shape),
        "decoded_size_if_held_mb": round(len(split) * 256 * 256 * 3 / 2**20, 1),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "python": sys.version.split()[0],
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
