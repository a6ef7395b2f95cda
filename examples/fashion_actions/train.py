"""Train one member of the fashion-actions committee on ONE torch thread and export it to ONNX.

    nice -n 5 python examples/fashion_actions/train.py small      # 1,200 steps of 16 clips
    nice -n 5 python examples/fashion_actions/train.py large

Training clips are made by ``clips.py`` from train[0:50000] (seeds 0..clips-1; cached in
``data/train.npz``, git-ignored); validation clips (train[50000:60000]) only report progress; the
test split is never read. Each member's input is made by the SDK itself from the spec's view and
preprocessing (:func:`edge_committee.cascade.clips.clip_input`), so training and deployment see
the same tensors. Augmentation relabels: a horizontal flip swaps left/right and cw/ccw, playing
the clip backwards swaps every motion with its opposite. Adam, cosine learning rate, batch 16.
Writes ``members/<member>.onnx`` (opset 17, input ``clip`` (N, 1, T, H, W), dynamic batch) and
its entry in ``members/training_log.json``.
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
import yaml
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

import clips  # noqa: E402
from models import NUM_CLASSES, build_member  # noqa: E402

from edge_committee.cascade.clips import ClipView, clip_input  # noqa: E402
from edge_committee.spec.preprocess import Preprocessing  # noqa: E402

#: action index after a horizontal flip, and after playing the clip backwards
FLIP = np.array([1, 0, 2, 3, 5, 4, 6, 7])
REVERSE = np.array([1, 0, 3, 2, 5, 4, 7, 6])


def member_input(name: str):
    """(view, preprocessing) of ``name`` as committee.yaml declares them."""
    spec = yaml.safe_load((HERE / "committee.yaml").read_text())
    m = next(m for m in spec["members"] if m["name"] == name)
    return ClipView(**m["view"]), Preprocessing.from_dict(m["preprocessing"])


def train_pool(n: int) -> tuple[np.ndarray, np.ndarray]:
    path = HERE / "data" / "train.npz"
    if path.is_file():
        with np.load(path) as z:
            if len(z["y"]) >= n:
                return z["x"][:n], z["y"][:n]
    x, y = clips.make_split("train", n)
    path.parent.mkdir(exist_ok=True)
    np.savez(path, x=x, y=y)
    return x, y


def batches(x: np.ndarray, y: np.ndarray, batch: int, view, pp, rng: np.random.Generator):
    while True:
        idx = rng.integers(0, len(x), batch)
        xb, yb = x[idx], y[idx]
        flip, back = rng.random(batch) < 0.5, rng.random(batch) < 0.5
        xb = np.where(flip[:, None, None, None], xb[:, :, :, ::-1], xb)
        xb = np.where(back[:, None, None, None], xb[:, ::-1], xb)
        yb = np.where(flip, FLIP[yb], yb)
        yb = np.where(back, REVERSE[yb], yb)
        xin = clip_input(np.ascontiguousarray(xb)[..., None], view, pp)
        yield torch.from_numpy(xin), torch.from_numpy(yb).long()


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, view, pp) -> float:
    model.eval()
    with torch.no_grad():
        pred = np.concatenate([model(torch.from_numpy(clip_input(x[i:i + 50, ..., None], view, pp))).argmax(1).numpy()
                               for i in range(0, len(x), 50)])
    model.train()
    return float(np.mean(pred == y))


def export(model: nn.Module, shape: tuple[int, ...], path: Path) -> None:
    model.eval()
    torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["clip"], output_names=["logits"],
                      dynamic_axes={"clip": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("member", choices=("small", "large"))
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--clips", type=int, default=6000, help="training clips generated")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "members")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    view, pp = member_input(args.member)
    t0 = time.time()
    x, y = train_pool(args.clips)
    vx, vy = clips.make_split("validation", 300)
    print(f"{len(x)} training clips ready in {time.time() - t0:.0f} s", flush=True)
    model = build_member(args.member)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    data = batches(x, y, args.batch, view, pp, rng)
    t0 = time.time()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        xb, yb = next(data)
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f} s", flush=True)
    seconds = time.time() - t0
    val = evaluate(model, vx, vy, view, pp)
    print(f"validation top-1 (300 clips) {val:.4f}; {seconds:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    shape = (1, view.frames, *pp.size)
    export(model, shape, args.out / f"{args.member}.onnx")
    log_path = args.out / "training_log.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    log[args.member] = {"steps": args.steps, "batch": args.batch, "clips": args.clips, "lr": args.lr,
                        "seed": args.seed, "seconds": round(seconds), "threads": 1, "input": list(shape),
                        "validation_top1_300_clips": round(val, 4), "classes": NUM_CLASSES,
                        "torch": torch.__version__}
    log_path.write_text(json.dumps(log, indent=2) + "\n")


if __name__ == "__main__":
    main()
