"""PyTorch's own top-1 next to the SDK's, image by image, with the same preprocessing.

    python examples/imagenet/compare.py out/imagenet [--json out/imagenet_compare.json]

For every member of the bundle: the PyTorch model (models.py, the same weights) on the same
images, preprocessed the way the member's framework does it, written out independently of the
SDK: PIL ``Image.resize`` of the RGB photo with the shorter side to ``resize_size`` (torchvision's
``Resize(int)`` rule), centre crop (torchvision's ``CenterCrop`` offsets), ``/ 255`` and
mean/std, or ``x * scale + offset``. Prints each member's MACs, the SDK's top-1 (from the
bundle's cached outputs), PyTorch's top-1 and how many per-image predictions differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def torch_input(path: str, pp: dict) -> np.ndarray:
    """(3, H, W) float32: the member's documented preprocessing, with PIL and NumPy only."""
    from PIL import Image

    size = pp["size"][0]
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[pp["interpolation"]]
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        short = pp["resize_size"]
        nw, nh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        im = im.resize((nw, nh), resample)
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        x = np.asarray(im.crop((left, top, left + size, top + size)), np.float32).transpose(2, 0, 1)
    if "scale" in pp:
        return x * np.float32(pp["scale"]) + np.float32(pp["offset"])
    mean, std = np.asarray(pp["mean"], np.float32)[:, None, None], np.asarray(pp["std"], np.float32)[:, None, None]
    return (x / 255.0 - mean) / std


def torch_logits(member: str, files: list[str], pp: dict) -> np.ndarray:
    import torch

    import models

    net = models.build(member)
    with torch.no_grad():
        return np.concatenate([net(torch.from_numpy(torch_input(f, pp))[None]).numpy() for f in files])


def compare(bundle: Path) -> dict:
    from edge_committee.bundle import load_outputs, read_manifest
    from edge_committee.data.readers import read_split

    manifest = read_manifest(bundle)
    arrays = load_outputs(bundle)
    split = read_split({"format": "folder", "path": str(HERE / "build" / "images")}, HERE,
                       manifest["labels"])
    labels = split.labels
    rows = {}
    for m in manifest["members"]:
        ours = arrays[f"{m['name']}/validation"].argmax(1)
        theirs = torch_logits(m["name"], split.files, m["preprocessing"]).argmax(1)
        rows[m["name"]] = {
            "macs": m["macs"], "images": int(len(labels)),
            "sdk_top1": float((ours == labels).mean()), "pytorch_top1": float((theirs == labels).mean()),
            "differing_predictions": int((ours != theirs).sum()),
        }
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = compare(args.bundle)
    print(f"{'member':20} {'MACs (M)':>9} {'SDK top-1':>10} {'PyTorch top-1':>14} {'differ':>7}")
    for name, r in rows.items():
        print(f"{name:20} {r['macs'] / 1e6:9.2f} {r['sdk_top1']:10.2%} {r['pytorch_top1']:14.2%} "
              f"{r['differing_predictions']:4d}/{r['images']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
