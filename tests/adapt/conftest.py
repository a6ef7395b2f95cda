"""A tiny committee of *PyTorch* members (built once per session), for self-training and self-cascades.

The task: 4 classes, the class is the brightest quadrant of a 12x12 grayscale image. Members are
small CNNs from a factory file written here (conv, BatchNorm, ReLU, 2x2 average pool, linear),
trained for a few steps; ``big-8`` runs ``big``'s model at 8x8 (``shares: big``), a self-cascade
stage. The "camera footage" is test images with lower contrast and higher brightness.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

FACTORY = '''
from torch import nn


def build(width: int = 4):
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * width, 4))
'''
LABELS = ["top-left", "top-right", "bottom-left", "bottom-right"]
MEMBERS = {"small": (2, 6, 15), "big": (8, 12, 40)}  # width, input size, training steps


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 200, (n, 12, 12)).astype(np.int32)
    boost = rng.integers(8, 40, n)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 6 * r : 6 * r + 6, 6 * q : 6 * q + 6] += boost[i]
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def shift(x: np.ndarray) -> np.ndarray:
    """The 'camera': half the contrast, brighter."""
    return np.clip(0.5 * x.astype(np.float32) + 110, 0, 255).astype(np.uint8)


def _train(folder: Path, name: str, width: int, size: int, steps: int, x: np.ndarray, y: np.ndarray) -> None:
    import importlib.util

    import torch
    from safetensors.torch import save_file

    from edge_committee.spec.preprocess import Preprocessing

    spec = importlib.util.spec_from_file_location("tiny_family", folder / "tiny_family.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    model = mod.build(width)
    pp = Preprocessing.from_dict({"size": [size, size], "color": "gray", "mean": [0.5], "std": [0.25]})
    xt, yt = torch.from_numpy(pp(x)), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for step in range(steps):
        idx = torch.arange(step * 64, step * 64 + 64) % len(xt)
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / f"{name}.safetensors"))


@pytest.fixture(scope="session")
def torch_committee_dir(tmp_path_factory) -> Path:
    """A folder with the factory, weights, data (.npz), footage (.npy) and ``committee.yaml``."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("torch_committee")
    (folder / "tiny_family.py").write_text(FACTORY)
    splits = {"train": make_images(1200, 0), "val": make_images(400, 1), "test": make_images(300, 2)}
    for split, (x, y) in splits.items():
        np.savez(folder / f"{split}.npz", x=x, y=y)
    for name, (width, size, steps) in MEMBERS.items():
        _train(folder, name, width, size, steps, *splits["train"])
    np.save(folder / "footage.npy", shift(make_images(400, 3)[0]))
    pp = lambda s: {"size": [s, s], "color": "gray", "mean": [0.5], "std": [0.25]}
    members = [{"name": n, "torch": {"factory": "tiny_family.py:build", "kwargs": {"width": w},
                                     "weights": f"{n}.safetensors"}, "preprocessing": pp(s)}
               for n, (w, s, _) in MEMBERS.items()]
    members.append({"name": "big-8", "shares": "big", "preprocessing": pp(8)})
    spec = {"name": "tiny-torch", "labels": LABELS, "members": members,
            "data": {"train": {"format": "npz", "path": "train.npz"},
                     "validation": {"format": "npz", "path": "val.npz"},
                     "test": {"format": "npz", "path": "test.npz"}},
            "budget": {"macs": "largest", "kind": "worst"},
            "selection": {"max_members": 3}, "evaluation": {"batch_size": 200, "threads": 1}}
    (folder / "committee.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


@pytest.fixture(scope="session")
def torch_bundle_master(torch_committee_dir: Path, tmp_path_factory) -> Path:
    from edge_committee.pipeline import build

    out = tmp_path_factory.mktemp("built") / "bundle"
    build(torch_committee_dir / "committee.yaml", out, cache_dir=tmp_path_factory.mktemp("cache"),
          log=lambda s: None)
    return out


@pytest.fixture
def torch_bundle(torch_bundle_master: Path, tmp_path: Path) -> Path:
    """A fresh copy of the built bundle for a test that changes it."""
    dest = tmp_path / "bundle"
    shutil.copytree(torch_bundle_master, dest)
    return dest
