"""Train one member of the fashion-streets committee on ONE torch thread and export it to ONNX.

    nice -n 5 python examples/fashion_streets/train.py small --steps 1500
    nice -n 5 python examples/fashion_streets/train.py large --steps 1500

Training frames are made by ``scenes.py`` from train[0:50000] (seeds 0..frames-1); the
validation frames (train[50000:60000]) only report progress; the test split is never read.
``small`` trains on whole 192x384 frames (it runs on the whole frame), ``large`` on random
``--crop`` windows of them (it runs on tile windows). Adam, cosine learning rate, cross-entropy
with the background class weighted 0.5. Writes ``members/<member>.onnx`` (opset 17, dynamic
batch, height and width) and appends to ``members/training_log.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scenes  # noqa: E402
from models import NUM_CLASSES, build_member  # noqa: E402

MEAN, STD = 0.45, 0.25  #: the members' normalization (committee.yaml says the same)


def normalize(x: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(x).float()[:, None] / 255.0 - MEAN) / STD


def miou(pred: np.ndarray, target: np.ndarray, classes: int = NUM_CLASSES) -> float:
    cm = np.bincount(target.ravel().astype(np.int64) * classes + pred.ravel(), minlength=classes * classes)
    cm = cm.reshape(classes, classes)
    inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    return float(np.mean(inter[union > 0] / union[union > 0]))


def forward_full(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits resized to the input's grid, as the SDK does (bilinear, half-pixel centres)."""
    return nn.functional.interpolate(model(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


def batches(kind: str, x: np.ndarray, y: np.ndarray, batch: int, crop: int, rng: np.random.Generator):
    while True:
        idx = rng.integers(0, len(x), batch)
        if kind == "small":
            xb, yb = x[idx], y[idx]
        else:
            h, w = x.shape[1:]
            ys, xs = rng.integers(0, h - crop + 1, batch), rng.integers(0, w - crop + 1, batch)
            xb = np.stack([x[i, a:a + crop, b:b + crop] for i, a, b in zip(idx, ys, xs)])
            yb = np.stack([y[i, a:a + crop, b:b + crop] for i, a, b in zip(idx, ys, xs)])
        flip = rng.random(batch) < 0.5
        xb = np.where(flip[:, None, None], xb[:, :, ::-1], xb)
        yb = np.where(flip[:, None, None], yb[:, :, ::-1], yb)
        yield normalize(np.ascontiguousarray(xb)), torch.from_numpy(np.ascontiguousarray(yb)).long()


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        pred = np.concatenate([forward_full(model, normalize(x[i:i + 4])).argmax(1).numpy()
                               for i in range(0, len(x), 4)])
    model.train()
    return miou(pred, y)


def export(model: nn.Module, path: Path) -> None:
    model.eval()
    example = torch.zeros(1, 1, *scenes.FRAME)
    torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                    "logits": {0: "batch", 2: "out_height", 3: "out_width"}},
                      do_constant_folding=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("member", choices=("small", "large"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=None, help="default: 4 frames (small), 16 crops (large)")
    ap.add_argument("--crop", type=int, default=96, help="large: training window (px)")
    ap.add_argument("--frames", type=int, default=600, help="training frames generated")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "members")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    x, y = scenes.make_split("train", args.frames)
    vx, vy = scenes.make_split("validation", 24)
    print(f"generated {len(x)} training frames in {time.time() - t0:.0f} s", flush=True)
    model = build_member(args.member)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    weight = torch.ones(NUM_CLASSES)
    weight[0] = 0.5
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    batch = args.batch or (4 if args.member == "small" else 16)
    data = batches(args.member, x, y, batch, args.crop, rng)
    t0 = time.time()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        xb, yb = next(data)
        loss = loss_fn(forward_full(model, xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f} s", flush=True)
    seconds = time.time() - t0
    val = evaluate(model, vx, vy)
    print(f"validation mIoU (24 frames, whole frame) {val:.4f}; {seconds:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    export(model, args.out / f"{args.member}.onnx")
    log_path = args.out / "training_log.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    log[args.member] = {"steps": args.steps, "batch": batch, "crop": args.crop if args.member == "large" else None,
                        "frames": args.frames, "lr": args.lr, "seed": args.seed, "seconds": round(seconds),
                        "threads": 1, "validation_miou_24_frames_whole_frame": round(val, 4),
                        "torch": torch.__version__}
    log_path.write_text(json.dumps(log, indent=2) + "\n")


if __name__ == "__main__":
    main()
