"""The two members of the fashion-streets committee: fully convolutional, output stride 4.

Both take a (N, 1, H, W) float tensor (any H, W divisible by 4) and return (N, 11, H/4, W/4)
logits; the SDK resizes the logits to the input's pixel grid (bilinear, half-pixel centres).

- ``small``: two 3x3 convolutions of stride 2 (12-24 channels), two residual 3x3 convolutions at
  24 channels with dilation 2 and 4, a 1x1 head: a receptive field of 55 px, about one item.
- ``large``: 2x wider stem, then four residual 3x3 convolutions at 48 channels with dilation
  1, 2, 4, 8 (a DeepLab-like context block, receptive field 131 px), a 1x1 head.
"""

from __future__ import annotations

from torch import nn

NUM_CLASSES = 11


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, ch: int, dilation: int) -> None:
        super().__init__()
        self.body = _conv(ch, ch, dilation=dilation)

    def forward(self, x):
        return x + self.body(x)


def build_member(kind: str) -> nn.Module:
    """``small`` or ``large`` (untrained)."""
    if kind == "small":
        return nn.Sequential(_conv(1, 12, 2), _conv(12, 24, 2), _Residual(24, 2), _Residual(24, 4),
                             nn.Conv2d(24, NUM_CLASSES, 1))
    if kind == "large":
        return nn.Sequential(_conv(1, 24, 2), _conv(24, 48, 2),
                             *[_Residual(48, d) for d in (1, 2, 4, 8)],
                             nn.Conv2d(48, NUM_CLASSES, 1))
    raise ValueError(f"member kind {kind!r} is not known; use 'small' or 'large'")
