"""Train the Fashion-MNIST family (reproduces ``weights/*.safetensors``).

Each member trains on train[0:50000] with its own preprocessing from ``committee.yaml`` (the
same transform the SDK applies at evaluation and run time), with random shifts and horizontal
flips; train[50000:60000] is held out for choosing the cascade; the test split is never read.

    python examples/fashion_mnist/train.py                 # all members, CPU or GPU
    python examples/fashion_mnist/train.py --phi 0 3 --device cuda --epochs 30
    python examples/fashion_mnist/train.py --bag 4          # bagged members bag0..bag3 (phi0-sized)

``--bag K`` trains K copies of a small member (``--bag-phi``, default 0) on K disjoint parts of
train[0:50000] (a permutation seeded by ``--seed``, split into K equal parts), each with its own
seed, into ``weights/bag<i>.safetensors``: the weak learners of "Efficient Adaptive Ensembling"
(Bruno et al. 2023), combined by ``committee_learned.yaml``.

The committed weights were trained on an NVIDIA H100 (see README.md for the command); cuDNN
kernels are not bit-identical across GPUs and CPUs, so a rerun gives weights of the same
accuracy (within a few tenths of a point), not the same bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from family import build_member  # noqa: E402

from edge_committee.data import read_split  # noqa: E402
from edge_committee.spec.preprocess import Preprocessing  # noqa: E402

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


def load_split(spec: dict, name: str, data_dir: str | None):
    cfg = dict(spec["data"][name])
    if data_dir:
        for key in ("images", "labels"):
            cfg[key] = cfg[key].replace(DEBIAN_DIR, data_dir)
    return read_split(cfg, HERE, where=f"data.{name}")


def augment(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random shift by up to ``pad`` pixels (zero padding in the normalized space) and flip."""
    n, _, h, w = x.shape
    xp = nn.functional.pad(x, (pad, pad, pad, pad), value=float(x.min()))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device="cpu").to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device="cpu").to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, :]
    out = xp[torch.arange(n, device=x.device)[:, None, None], 0, rows, cols][:, None]
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(x)


def train_member(member: dict, splits: dict, args: argparse.Namespace, seed: int | None = None) -> dict:
    phi = member["torch"]["kwargs"]["phi"]
    seed = args.seed + phi if seed is None else seed
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    pp = Preprocessing.from_dict(member["preprocessing"])
    dev = torch.device(args.device)
    xs = {k: torch.from_numpy(pp(s.images)).to(dev) for k, s in splits.items()}
    ys = {k: torch.from_numpy(s.labels).to(dev) for k, s in splits.items()}
    model = build_member(phi).to(dev)
    opt = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.wd
    )
    n = len(xs["train"])
    steps_per_epoch = math.ceil(n / args.batch)
    total = args.epochs * steps_per_epoch
    warm = steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))),
    )
    loss_fn = nn.CrossEntropyLoss()
    pad = max(1, round(2 * pp.size[0] / 28))
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch : (i + 1) * args.batch]
            loss = loss_fn(model(augment(xs["train"][idx], pad, gen)), ys["train"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            acc = evaluate(model, xs["validation"], ys["validation"])
            print(f"{member['name']} epoch {epoch + 1}/{args.epochs} loss {loss.item():.3f} val {acc:.4f}", flush=True)
    val_acc = evaluate(model, xs["validation"], ys["validation"])
    out = HERE / member["torch"]["weights"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, out)
    return {"member": member["name"], "phi": phi, "validation_accuracy": val_acc, "epochs": args.epochs,
            "train_samples": n, "seed": seed, "seconds": round(time.time() - start, 1), "device": str(dev),
            "threads": torch.get_num_threads()}


def bag_parts(n: int, k: int, seed: int) -> list[np.ndarray]:
    """K disjoint index sets covering range(n): a permutation seeded by ``seed``, split evenly."""
    return np.array_split(np.random.default_rng(seed).permutation(n), k)


def bagged_members(spec: dict, splits: dict, k: int, phi: int, seed: int):
    """(member dict, splits restricted to its part, seed) for each of the K bagged members."""
    base = next(m for m in spec["members"] if m["torch"]["kwargs"]["phi"] == phi)
    for i, part in enumerate(bag_parts(len(splits["train"]), k, seed)):
        train = splits["train"]
        part_split = dataclasses.replace(train, images=train.images[part], labels=train.labels[part])
        member = {"name": f"bag{i}", "torch": {"kwargs": {"phi": phi}, "weights": f"weights/bag{i}.safetensors"},
                  "preprocessing": base["preprocessing"]}
        yield member, {**splits, "train": part_split}, seed + 1000 + i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phi", type=int, nargs="*", help="members to train (default: all)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data-dir", help=f"folder with the IDX files (default: {DEBIAN_DIR})")
    ap.add_argument("--log", default=str(HERE / "weights" / "training_log.json"))
    ap.add_argument("--bag", type=int, metavar="K",
                    help="train K bagged copies of member --bag-phi on disjoint parts of the training split")
    ap.add_argument("--bag-phi", type=int, default=0, help="the bagged members' size (default 0)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    spec = yaml.safe_load((HERE / "committee.yaml").read_text())
    splits = {k: load_split(spec, k, args.data_dir) for k in ("train", "validation")}
    members = [m for m in spec["members"] if args.phi is None or m["torch"]["kwargs"]["phi"] in args.phi]
    log_path = Path(args.log)
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    jobs = ([(m, splits, None) for m in members] if not args.bag
            else list(bagged_members(spec, splits, args.bag, args.bag_phi, args.seed)))
    for m, member_splits, seed in jobs:
        log[m["name"]] = train_member(m, member_splits, args, seed)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(json.dumps(log, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
