"""A compound-scaled CNN family for Fashion-MNIST (EfficientNet's rule on a small base).

Member ``phi`` grows depth, width and input resolution together (Tan & Le 2019):
``depth = 1.2**phi``, ``width = 1.1**phi``, ``resolution = 1.15**phi`` times the base's, so each
step roughly doubles the MACs (1.2 * 1.1**2 * 1.15**2 ~= 1.92).

Base network (phi = 0), 16 x 16 grayscale input:
stem 3x3 conv (16) -> stage 1: 1 residual block of two 3x3 convs (16 ch, 16x16)
-> stage 2: 1 block, stride 2 (32 ch) -> stage 3: 1 block, stride 2 (64 ch) -> global average
pool -> linear (10). Every conv is followed by batch norm and ReLU.

This file is the member factory named in ``committee.yaml`` (``family.py:build_member``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

BASE_RESOLUTION = 16
BASE_STAGES = ((16, 1, 1), (32, 1, 2), (64, 1, 2))  # (channels, blocks, stride)
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # depth, width, resolution
NUM_CLASSES = 10
PHIS = (0, 1, 2, 3, 4, 5)


def round_channels(c: float, divisor: int = 4) -> int:
    """Round a channel count to a multiple of ``divisor``, never down by more than 10%."""
    out = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * c else out


def member_config(phi: int) -> dict:
    """Depth, width and resolution of member ``phi``."""
    d, w, r = ALPHA**phi, BETA**phi, GAMMA**phi
    stages = [(round_channels(c * w), int(math.ceil(n * d)), s) for c, n, s in BASE_STAGES]
    return {
        "phi": phi,
        "resolution": int(round(BASE_RESOLUTION * r)),
        "stem": round_channels(16 * w),
        "stages": stages,
    }


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Block(nn.Module):
    """Two 3x3 convs with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.skip(x))


class FamilyNet(nn.Module):
    """One member of the family; input (N, 1, r, r), output logits (N, 10)."""

    def __init__(self, phi: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        cfg = member_config(phi)
        layers: list[nn.Module] = [conv_bn(1, cfg["stem"])]
        cin = cfg["stem"]
        for cout, blocks, stride in cfg["stages"]:
            for i in range(blocks):
                layers.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build_member(phi: int) -> FamilyNet:
    """The factory the committee spec names: an untrained member ``phi``."""
    if phi not in PHIS:
        raise ValueError(f"phi must be one of {PHIS}; got {phi!r}")
    return FamilyNet(phi)
