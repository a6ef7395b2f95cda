"""Preprocessing at camera sizes, then ``predict`` end to end: writes docs/preprocessing_benchmark.{md,json}.

    python benchmarks/bench_preprocess.py                       # both parts (builds nothing)
    python benchmarks/bench_preprocess.py --bundle out/imagenet --fm-bundle out/fashion_mnist  # all three parts

Part 1, per member: RGB frames (480x640, 720x1280, 1080x1920, made from a real photo resized up with
sensor-like noise) -> the member's input, for two members: 224x224 (torchvision's Resize(256) +
CenterCrop(224), bicubic, ImageNet mean/std, NCHW) and 28x28 gray (stretch, bilinear; the
Fashion-MNIST family's kind). Side by side in one process, interleaved, one thread each (torch,
OpenCV, BLAS, ONNX Runtime): the SDK's plan in exact and fast mode, the dense float64 execution the
SDK used before (the baseline of issue 18), PIL doing the same operation itself (resize, crop,
normalize), OpenCV (INTER_CUBIC/LINEAR and INTER_AREA) and torch's ``F.interpolate`` on uint8
(antialias). Median of ``--repeats`` rounds, each the mean of back-to-back calls for >= 30 ms; the
max difference from PIL in grey levels.

Part 2, end to end (needs ``--bundle``, e.g. the ImageNet example): ``CascadeModel.predict`` of the
bundle's cascade, one image per call (a camera's batch), against the loop a user would write by
hand: PIL resize + crop + normalize, then the largest member on ONNX Runtime. On the photos of
the bundle's validation folder and on 720p and 1080p frames made from them. Also the share of
the cascade's time spent preprocessing, and the cascade's exits.

Part 3, accuracy (needs the bundles): labels and exit stages that change with fast mode (the
Fashion-MNIST test split, the ImageNet photos) and with the fused file's float32 preprocessing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAMES = ((480, 640), (720, 1280), (1080, 1920))
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def single_thread() -> None:
    import cv2
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    threadpool_limits(1)


def photo() -> np.ndarray:
    """A real photo (the first ImageNet JPEG that foolbox ships; else a smooth synthetic scene)."""
    from PIL import Image

    try:
        import importlib.util

        spec = importlib.util.find_spec("foolbox")
        data = Path(list(spec.submodule_search_locations)[0]) / "data"
        return np.asarray(Image.open(sorted(data.glob("imagenet_*.jpg"))[0]).convert("RGB"))
    except Exception:  # noqa: BLE001 - any failure: the synthetic scene
        y, x = np.mgrid[0:512, 0:512] / 512.0
        return (np.stack([np.sin(8 * x) * 0.5 + 0.5, y, np.cos(5 * x * y) * 0.5 + 0.5], -1) * 255).astype(np.uint8)


def frame(src: np.ndarray, hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``src`` resized to ``hw`` (PIL bicubic) with noise of sigma 3 (sensor texture)."""
    from PIL import Image

    big = np.asarray(Image.fromarray(src).resize((hw[1], hw[0]), Image.BICUBIC), np.float32)
    noise = np.random.default_rng(seed).normal(0, 3, big.shape)
    return np.clip(big + noise + 0.5, 0, 255).astype(np.uint8)


def timed(fn, repeats: int, min_s: float = 0.03) -> float:
    """Median over ``repeats`` of the mean ms of back-to-back calls lasting >= ``min_s``."""
    out = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_s:
                break
        out.append(dt / n * 1e3)
    return float(np.median(out))


# ---------------------------------------------------------------------------------------- part 1
def member_ops(kind: str, hw: tuple[int, int]):
    """name -> callable(frame) -> member input (float32), for one member kind and frame size."""
    import cv2
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from edge_committee.preprocess import cpu
    from edge_committee.spec.preprocess import Preprocessing

    h, w = hw
    if kind == "224 rgb":
        pp = Preprocessing(size=(224, 224), resize="shorter_side", resize_size=256, interpolation="bicubic",
                           mean=MEAN, std=STD)
        plan = pp.plan(hw, 3)
        mid_h, mid_w = plan.geometry.mid_hw
        oy, ox = plan.geometry.offset
        mean, std = np.array(MEAN, np.float32) * 255, np.array(STD, np.float32) * 255

        def norm(a):  # (224, 224, 3) uint8/float -> NCHW float32, as a user writes it
            return ((np.asarray(a, np.float32) - mean) / std).transpose(2, 0, 1)[None]

        def pil(x):
            im = Image.fromarray(x).resize((mid_w, mid_h), Image.BICUBIC)
            return norm(im.crop((ox, oy, ox + 224, oy + 224)))

        def cv(flag):
            return lambda x: norm(cv2.resize(x, (mid_w, mid_h), interpolation=flag)[oy:oy + 224, ox:ox + 224])

        def tor(x):
            t = torch.from_numpy(x).permute(2, 0, 1)[None]
            r = F.interpolate(t, size=(mid_h, mid_w), mode="bicubic", antialias=True)[0]
            return norm(r[:, oy:oy + 224, ox:ox + 224].permute(1, 2, 0).numpy())

        ops = {"PIL resize + crop + normalize": pil, "OpenCV INTER_CUBIC": cv(cv2.INTER_CUBIC),
               "OpenCV INTER_AREA": cv(cv2.INTER_AREA), "torch uint8 antialias": tor}
    else:
        pp = Preprocessing(size=(28, 28), color="gray", mean=(0.2860,), std=(0.3530,))
        plan = pp.plan(hw, 3)

        def norm(a):
            return ((np.asarray(a, np.float32) / 255 - 0.2860) / 0.3530)[None, None]

        def pil(x):
            return norm(Image.fromarray(x).convert("L").resize((28, 28), Image.BILINEAR))

        def cv(flag):
            return lambda x: norm(cv2.resize(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), (28, 28), interpolation=flag))

        def tor(x):
            g = torch.from_numpy(np.asarray(Image.fromarray(x).convert("L")))[None, None]
            return norm(F.interpolate(g, size=(28, 28), mode="bilinear", antialias=True)[0, 0].numpy())

        ops = {"PIL resize + crop + normalize": pil, "OpenCV INTER_LINEAR": cv(cv2.INTER_LINEAR),
               "OpenCV INTER_AREA": cv(cv2.INTER_AREA), "torch uint8 antialias": tor}
    dense = [(s.axis, s.weights, s.round_clip) for s in plan.steps]  # the old code cached these per plan
    ours = {"SDK exact": lambda x: cpu.execute(plan, x[None], "exact"),
            "SDK fast": lambda x: cpu.execute(plan, x[None], "fast"),
            "SDK before (dense float64)": lambda x: dense_f64(plan, x[None], dense)}
    return {**ours, **ops}, plan


def part1(repeats: int) -> list[dict]:
    src = photo()
    rows = []
    for hw in FRAMES:
        x = frame(src, hw)
        for kind in ("224 rgb", "28 gray"):
            ops, plan = member_ops(kind, hw)
            ref = ops["PIL resize + crop + normalize"](x)
            scale = np.abs(plan.mul)[None, :, None, None]
            times = {name: [] for name in ops}
            order = list(ops)
            for r in range(repeats):  # interleaved: every variant once per round, shuffled
                np.random.default_rng(r).shuffle(order)
                for name in order:
                    times[name].append(timed(lambda: ops[name](x), 1))
            pil_ms = float(np.median(times["PIL resize + crop + normalize"]))
            for name, fn in ops.items():
                out = np.asarray(fn(x), np.float64).reshape(ref.shape)
                rows.append({"frame": f"{hw[0]}x{hw[1]}", "member": kind, "variant": name,
                             "ms": float(np.median(times[name])), "ratio_to_pil": float(np.median(times[name])) / pil_ms,
                             "max_levels_vs_pil": float(np.round((np.abs(out - ref) / scale).max(), 2))})
            print(f"{hw} {kind}: " + ", ".join(f"{r['variant']} {r['ms']:.2f}" for r in rows[-len(ops):]), flush=True)
    return rows


def dense_f64(plan, x: np.ndarray, dense) -> np.ndarray:
    """The execution the SDK had before issue 18: a dense (n_out, n_in) float64 product per axis."""
    y = x.astype(np.float64)
    if not plan.color_is_identity:
        y = y @ plan.color
        if plan.color_round:
            y = np.clip(np.floor(y + 0.5), 0, 255)
    for axis, wm, rc in dense:
        ax = 1 if axis == "h" else 2
        moved = np.moveaxis(y, ax, -1)
        y = np.moveaxis((moved.reshape(-1, moved.shape[-1]) @ wm.T).reshape(*moved.shape[:-1], wm.shape[0]), -1, ax)
        if rc:
            y = np.clip(np.floor(y + 0.5), 0, 255)
    return plan.normalize(y)


# ---------------------------------------------------------------------------------------- part 2
def part2(bundle: Path, repeats: int) -> dict:
    import onnxruntime as ort
    from PIL import Image

    from edge_committee import load
    from edge_committee.bundle import read_manifest
    from edge_committee.data.readers import read_image
    from edge_committee.preprocess.shared import SharedPreprocessing

    manifest = read_manifest(bundle)
    largest = max(manifest["members"], key=lambda m: m["macs"])
    pp_l = largest["preprocessing"]
    images = [read_image(p) for p in sorted(_photos(bundle))]
    if not images:
        raise SystemExit(f"{bundle}: no photos found for part 2")
    sets = {"photos": images, "720x1280": [frame(im, (720, 1280), i) for i, im in enumerate(images)],
            "1080x1920": [frame(im, (1080, 1920), i) for i, im in enumerate(images)]}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(bundle / largest["file"]), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    size = tuple(pp_l["size"])
    rs = pp_l.get("resize_size") or int(size[0] / pp_l.get("crop_pct", 0.875))
    interp = Image.BICUBIC if pp_l.get("interpolation") == "bicubic" else Image.BILINEAR
    if "mean" in pp_l:
        mul = 1 / (255 * np.array(pp_l["std"], np.float32))
        add = -np.array(pp_l["mean"], np.float32) / np.array(pp_l["std"], np.float32)
    else:
        mul, add = np.float32(pp_l["scale"]), np.float32(pp_l["offset"])

    def plain(im):  # what a user writes: PIL Resize(shorter side) + CenterCrop + normalize + the largest member
        pim = Image.fromarray(im)
        w, h = pim.size
        nw, nh = (rs, int(rs * h / w)) if w <= h else (int(rs * w / h), rs)
        pim = pim.resize((nw, nh), interp)
        top, left = int(round((nh - size[0]) / 2.0)), int(round((nw - size[1]) / 2.0))
        a = np.asarray(pim.crop((left, top, left + size[1], top + size[0])), np.float32) * mul + add
        return sess.run(None, {name: a.transpose(2, 0, 1)[None]})[0]

    out = {"largest": largest["name"], "cascade": manifest["cascade"]["members"],
           "thresholds": manifest["cascade"]["thresholds"], "sets": {}}
    with load(bundle, threads=1) as model, load(bundle, threads=1, preprocess="fast") as fast_model:
        for set_name, ims in sets.items():
            t_plain, t_exact, t_fast, t_pre = [], [], [], []
            for _ in range(repeats):
                t_plain.append(_per_image(plain, ims))
                t_exact.append(_per_image(lambda im: model.predict(im[None]), ims))
                t_fast.append(_per_image(lambda im: fast_model.predict(im[None]), ims))
                t_pre.append(_per_image(lambda im: [SharedPreprocessing(im[None])(pp, np.arange(1))
                                                    for pp in model.preprocessing[:1]], ims))
            exits = np.bincount(np.concatenate([model.predict(im[None]).exit_stage for im in ims]),
                                minlength=len(model.members))
            row = {"images": len(ims), "plain_ms": float(np.median(t_plain)), "cascade_ms": float(np.median(t_exact)),
                   "cascade_fast_ms": float(np.median(t_fast)), "stage0_preprocess_ms": float(np.median(t_pre)),
                   "exits": exits.tolist()}
            row["ratio"] = row["cascade_ms"] / row["plain_ms"]
            row["ratio_fast"] = row["cascade_fast_ms"] / row["plain_ms"]
            out["sets"][set_name] = row
            print(set_name, row, flush=True)
    return out


def _photos(bundle: Path) -> list[Path]:
    """The ImageNet example's labelled photos (examples/imagenet/prepare.py lays them out)."""
    return list((ROOT / "examples/imagenet/build/images").rglob("*.jpg"))


def _per_image(fn, ims) -> float:
    t0 = time.perf_counter()
    for im in ims:
        fn(im)
    return (time.perf_counter() - t0) / len(ims) * 1e3


# ---------------------------------------------------------------------------------------- part 3
FMNIST_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def part3(fm_bundle: Path | None, imagenet_bundle: Path | None) -> dict:
    """Labels (and exit stages) that change: fast vs exact, the fused file (exact, float32) vs predict."""
    import tempfile

    import onnxruntime as ort

    from edge_committee import load
    from edge_committee.cli.main import main as cli
    from edge_committee.data.readers import read_idx, read_image

    out = {}
    if fm_bundle is not None:
        images = read_idx(FMNIST_TEST)[..., None]
        with load(fm_bundle, threads=1) as exact, load(fm_bundle, threads=1, preprocess="fast") as fast:
            ref, alt = exact.predict(images), fast.predict(images)
        row = {"images": len(images), "fast_labels": int((ref.labels != alt.labels).sum()),
               "fast_exits": int((ref.exit_stage != alt.exit_stage).sum())}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        with tempfile.TemporaryDirectory() as tmp:
            for precision in ("exact", "float32"):
                path = Path(tmp) / f"{precision}.onnx"
                assert cli(["export-onnx", "--quiet", str(fm_bundle), "--out", str(path), "--source-size", "28x28",
                            "--preprocess", precision]) == 0
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                labels, _, stage, _, _ = sess.run(None, {"images": images})
                row[f"fused_{precision}_labels"] = int((labels != ref.labels).sum())
                row[f"fused_{precision}_exits"] = int((stage != ref.exit_stage).sum())
        out["fashion_mnist_test"] = row
        print("fashion-mnist", row, flush=True)
    if imagenet_bundle is not None:
        ims = [read_image(p) for p in sorted(_photos(imagenet_bundle))]
        with load(imagenet_bundle, threads=1) as exact, load(imagenet_bundle, threads=1, preprocess="fast") as fast:
            diffs = exits = 0
            for im in ims:
                a, b = exact.predict(im[None]), fast.predict(im[None])
                diffs += int(a.labels[0] != b.labels[0])
                exits += int(a.exit_stage[0] != b.exit_stage[0])
        out["imagenet_photos"] = {"images": len(ims), "fast_labels": diffs, "fast_exits": exits}
        print("imagenet", out["imagenet_photos"], flush=True)
    return out


# ---------------------------------------------------------------------------------------- report
def markdown(doc: dict) -> str:
    lines = ["# Preprocessing at camera speed (benchmark)", "",
             f"Machine: {doc['machine']}. Command: `{doc['command']}`. One thread for every library "
             "(torch, OpenCV, BLAS, ONNX Runtime); the variants run side by side in one process, interleaved; "
             f"each figure is the median of {doc['repeats']} rounds. Frames are a real photo (the first ImageNet "
             "JPEG foolbox ships) resized up with sensor-like noise. \"levels\": the largest difference from PIL's "
             "own result in grey levels (0..255), after the normalization is undone.", "",
             "## Per member", ""]
    for member in ("224 rgb", "28 gray"):
        what = ("224x224: torchvision Resize(256) + CenterCrop(224), bicubic, mean/std, NCHW" if member == "224 rgb"
                else "28x28 gray: PIL convert('L'), stretch, bilinear, mean/std")
        lines += [f"### {what}", "", "| frame | variant | ms | × PIL | levels vs PIL |", "|---|---|---:|---:|---:|"]
        for r in doc["part1"]:
            if r["member"] == member:
                lines.append(f"| {r['frame']} | {r['variant']} | {r['ms']:.2f} | {r['ratio_to_pil']:.2f} | "
                             f"{r['max_levels_vs_pil']:g} |")
        lines.append("")
    if doc.get("part2"):
        p = doc["part2"]
        lines += ["## `predict` end to end", "",
                  f"Bundle: `{doc['bundle']}`; cascade {' → '.join(p['cascade'])} (thresholds "
                  f"{', '.join(f'{t:.4f}' for t in p['thresholds'])}); largest member {p['largest']}. One image per "
                  "call. *plain*: PIL resize + crop + normalize, then the largest member on ONNX Runtime, written "
                  "by hand. *stage-0 preprocessing*: the first member's preprocessing alone (SDK, exact).", "",
                  "| images | n | plain (ms/img) | cascade exact (ms/img) | × plain | cascade fast | × plain | "
                  "stage-0 preprocessing (ms/img) | exits per stage |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for name, r in p["sets"].items():
            lines.append(f"| {name} | {r['images']} | {r['plain_ms']:.1f} | {r['cascade_ms']:.1f} | {r['ratio']:.2f} | "
                         f"{r['cascade_fast_ms']:.1f} | {r['ratio_fast']:.2f} | {r['stage0_preprocess_ms']:.2f} | "
                         f"{r['exits']} |")
        lines.append("")
    if doc.get("part3"):
        lines += ["## What fast mode and the float32 fused file change", "",
                  "Predictions of `predict` in exact mode (bit for bit the frameworks' resize) against fast mode, "
                  "and against the fused file exported with `--preprocess exact` and `--preprocess float32` (the form "
                  "TensorRT needs); counts of images whose label or exit stage differs.", "",
                  "| data | images | fast: labels | fast: exit stages | fused exact: labels | fused exact: exits | "
                  "fused float32: labels | fused float32: exits |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in doc["part3"].items():
            lines.append(f"| {name} | {r['images']} | {r['fast_labels']} | {r['fast_exits']} | "
                         f"{r.get('fused_exact_labels', '–')} | {r.get('fused_exact_exits', '–')} | "
                         f"{r.get('fused_float32_labels', '–')} | {r.get('fused_float32_exits', '–')} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, help="a bundle for part 2 (e.g. out/imagenet)")
    ap.add_argument("--fm-bundle", type=Path, help="the Fashion-MNIST example bundle for part 3 (e.g. out/fashion_mnist)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip-part1", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "preprocessing_benchmark")
    args = ap.parse_args(argv)
    single_thread()
    doc = {"machine": f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'CPU'})",
           "command": "python benchmarks/bench_preprocess.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "repeats": args.repeats, "bundle": str(args.bundle) if args.bundle else None}
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
        if model:
            doc["machine"] = f"{model}, {os.cpu_count()} cores"
    except OSError:
        pass
    doc["part1"] = [] if args.skip_part1 else part1(args.repeats)
    if args.bundle:
        doc["part2"] = part2(args.bundle, max(3, args.repeats // 2))
    if args.bundle or args.fm_bundle:
        doc["part3"] = part3(args.fm_bundle, args.bundle)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(args.out.with_suffix(".json"))
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(markdown(doc))
    tmp.replace(args.out.with_suffix(".md"))
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
