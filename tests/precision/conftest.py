"""Tiny CNNs built in code for the precision tests (torch -> ONNX, opset 17, dynamic batch).

The task is synthetic and easy: 16x16 gray images with a bright square in one of 4 quadrants
(the label) plus noise. A small CNN with the structure of the real members (Conv + BN, depthwise
Conv + BN, pointwise Conv + BN, ReLU, max and global average pooling, Linear -> Gemm; the
exporter folds BN into the convolutions) learns it in about a second, so INT8 and FP16 have a
meaningful accuracy to keep.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.data.readers import RawSplit
from edge_committee.spec.preprocess import Preprocessing

torch = pytest.importorskip("torch")
nn = torch.nn

SIZE = 16
CLASSES = 4
PREPROCESSING = Preprocessing(size=(SIZE, SIZE), color="gray", mean=(0.5,), std=(0.25,))


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 16, 16, 1) images and int64 labels: the shape drawn at a random place.

    0: a horizontal bar, 1: a vertical bar, 2: a filled square, 3: a hollow square.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    x = rng.normal(60, 20, (n, SIZE, SIZE))
    for i, k in enumerate(labels):
        r, c = rng.integers(1, SIZE - 8, 2)
        v = rng.uniform(100, 170)
        if k == 0:
            x[i, r + 3 : r + 5, c : c + 8] += v
        elif k == 1:
            x[i, r : r + 8, c + 3 : c + 5] += v
        elif k == 2:
            x[i, r + 1 : r + 7, c + 1 : c + 7] += v
        else:
            x[i, r : r + 8, c : c + 8] += v
            x[i, r + 2 : r + 6, c + 2 : c + 6] -= v
    return x.clip(0, 255).astype(np.uint8)[..., None], labels.astype(np.int64)


class TinyNet(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.dw = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU()
        )
        self.pw = nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU())
        self.pool = nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * c, CLASSES)

    def forward(self, x):
        return self.fc(self.pool(self.pw(self.dw(self.stem(x)))))


class OutlierNet(nn.Module):
    """TinyNet plus one activation channel that is always 1e4 and that the classifier ignores.

    FP32 output is unchanged, but a per-tensor INT8 scale over that tensor is about 80, so every
    informative activation rounds to 0: a model INT8 destroys (the gate must reject it).
    """

    def __init__(self, net: TinyNet) -> None:
        super().__init__()
        self.net = net
        c = net.fc.in_features
        self.extra = nn.Conv2d(c // 2, 1, 1)
        nn.init.zeros_(self.extra.weight)
        nn.init.constant_(self.extra.bias, 1e4)
        self.fc = nn.Linear(c + 1, CLASSES)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[:, :c] = net.fc.weight
            self.fc.bias.copy_(net.fc.bias)

    def forward(self, x):
        h = self.net.dw(self.net.stem(x))
        feats = torch.cat([self.net.pw(h), torch.relu(self.extra(h))], dim=1)
        return self.fc(self.net.pool(feats))


def train(net: nn.Module, steps: int = 100, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    x, y = make_images(1024, seed=100 + seed)
    xt = torch.from_numpy(PREPROCESSING(x))
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (64,), generator=g)
        loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def export(net: nn.Module, path) -> str:
    from edge_committee.export import export_onnx

    export_onnx(net, PREPROCESSING.input_shape(1)[1:], path, opset=17, parity_tolerance=1e-3)
    return str(path)


@pytest.fixture(scope="session")
def trained_net() -> TinyNet:
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the initial weights too: the same model in every run
    return train(TinyNet())


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, trained_net) -> str:
    """A trained TinyNet as FP32 ONNX (opset 17, dynamic batch)."""
    return export(trained_net, tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="session")
def outlier_onnx(tmp_path_factory, trained_net) -> str:
    return export(OutlierNet(trained_net).eval(), tmp_path_factory.mktemp("outlier") / "outlier.onnx")


@pytest.fixture(scope="session")
def val_split() -> RawSplit:
    x, y = make_images(400, seed=7)
    return RawSplit(x, y, [], name="validation")


@pytest.fixture(scope="session")
def calib_inputs() -> np.ndarray:
    x, _ = make_images(128, seed=11)
    return PREPROCESSING(x)


@pytest.fixture()
def preprocessing() -> Preprocessing:
    return PREPROCESSING
