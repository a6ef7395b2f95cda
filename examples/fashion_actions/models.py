"""The two members of the fashion-actions committee: X3D-style 3D CNNs of one design, expanded along
X3D's axes (frames, resolution, width).

``small`` (X3D-XS-like) sees 4 frames (temporal stride 4) at 32x32 and is 8 channels wide; ``large``
(X3D-M-like) sees all 16 frames at 64x64 and is 16 wide. Both take ``(N, 1, T, H, W)`` float input
(NCTHW, the torchvision/X3D video layout) and output ``(N, 8)`` logits: four 3x3x3 (the last 1x3x3)
convolutions with batch norm and ReLU, global average pooling, a linear classifier.
"""

from __future__ import annotations

from torch import nn

NUM_CLASSES = 8
#: member -> (width, frames, temporal stride, height/width, temporal strides of the four convolutions)
MEMBERS = {
    "small": (8, 4, 4, 32, (1, 1, 2, 1)),
    "large": (16, 16, 1, 64, (1, 2, 2, 1)),
}


def _block(c_in: int, c_out: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(c_in, c_out, kernel, stride, pad, bias=False), nn.BatchNorm3d(c_out), nn.ReLU())


def build_member(name: str) -> nn.Module:
    width, _, _, _, ts = MEMBERS[name]
    return nn.Sequential(
        _block(1, width, (3, 3, 3), (ts[0], 2, 2)),
        _block(width, 2 * width, (3, 3, 3), (ts[1], 2, 2)),
        _block(2 * width, 4 * width, (3, 3, 3), (ts[2], 2, 2)),
        _block(4 * width, 4 * width, (1, 3, 3), (ts[3], 2, 2)),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4 * width, NUM_CLASSES),
    )
