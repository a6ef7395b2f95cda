"""The tile cascade in PyTorch (CPU or CUDA tensors): the device runtime's path for segmentation.

Same semantics as the NumPy reference (:mod:`edge_committee.cascade.tiles`): member 0 on whole
frames, logits resized bilinearly (half-pixel centres) to the frame grid, softmax, per-tile running
sum and count, tile confidence (``mean_max_prob`` or ``p10_max_prob``), exit on ``>=``, the
active tiles' windows (reflect-padded, ``tile + 2 margin``) to the next member in one batched call.
All tensors stay on the members' device; the only host read per stage is the number of active
tiles (it sizes the next call). Tested against the reference on the CPU; float32 sums may differ
from NumPy's in the last bits, so a tile whose confidence lies within a few ULPs of a threshold may
decide differently (the tests allow only those).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from edge_committee._lazy import require
from edge_committee.cascade.tiles import TileGrid


def _torch():
    return require("torch")


def resize(x, size: tuple[int, int]):
    """(N, C, h, w) -> (N, C, H, W) float32, bilinear, ``align_corners=False`` (as the reference)."""
    x = x.float()
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return _torch().nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def tile_confidence(mean, kind: str):
    """(M, C, th, tw) -> (M,) float32."""
    top = mean.amax(dim=1).reshape(mean.shape[0], -1)
    if kind == "mean_max_prob":
        return top.double().mean(dim=1).float()
    if kind == "p10_max_prob":  # numpy percentile(method="lower"): the floor((n - 1) * 0.1)-th smallest
        k = int((top.shape[1] - 1) * 0.1)
        return top.sort(dim=1).values[:, k]
    raise ValueError(f"unknown tile confidence {kind!r}; the torch path has mean_max_prob and p10_max_prob")


def windows(x, grid: TileGrid, index):
    """Windows (M, Ch, th + 2m, tw + 2m) around flat tile indices ``index`` of frames ``x`` (N, Ch, H, W)."""
    torch = _torch()
    (th, tw), m = grid.tile, grid.margin
    wh, ww = grid.window
    src = torch.nn.functional.pad(x, (m, m, m, m), mode="reflect") if m else x
    w = src.unfold(2, wh, th).unfold(3, ww, tw)  # (N, Ch, r, q, wh, ww)
    n, ch, r, q = w.shape[:4]
    return w.permute(0, 2, 3, 1, 4, 5).reshape(n * r * q, ch, wh, ww)[index]


def split(dense, grid: TileGrid):
    n, c, h, w = dense.shape
    (th, tw), (r, q) = grid.tile, grid.shape((h, w))
    return dense.reshape(n, c, r, th, q, tw).permute(0, 2, 4, 1, 3, 5).reshape(n * r * q, c, th, tw)


def merge(tiles, grid: TileGrid, frame: tuple[int, int]):
    (th, tw), (r, q) = grid.tile, grid.shape(frame)
    c = tiles.shape[1]
    return tiles.reshape(-1, r, q, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(-1, c, frame[0], frame[1])


@dataclasses.dataclass
class TorchTileResult:
    labels: object  #: (N, H, W) int64 tensor (-1 where no member gave finite logits)
    probs: object  #: (N, C, H, W) float32 tensor, mean probabilities at each tile's exit
    tile_confidence: object  #: (N, T) float32 tensor
    tile_exit_stage: object  #: (N, T) int32 tensor
    tiles_run: list[int]  #: tiles each later member ran on


def run_tile_cascade_torch(x, members: Sequence[Callable], grid: TileGrid, thresholds: Sequence[float],
                           confidence: str = "mean_max_prob") -> TorchTileResult:
    """The tile cascade on preprocessed frames ``x`` (N, Ch, H, W), every member taking that input.

    ``members[k]`` maps a float tensor batch (n, Ch, h, w) to logits (n, C, h', w').
    """
    torch = _torch()
    n, frame = x.shape[0], tuple(x.shape[-2:])
    per_frame, k_total = grid.count(frame), len(members)
    t = [float(v) for v in thresholds] + [float("inf")] * (k_total - len(thresholds))
    with torch.no_grad():
        first = split(resize(members[0](x), frame), grid)
        total = torch.zeros_like(first)
        count = torch.zeros(first.shape[0], dtype=torch.int32, device=x.device)
        conf = torch.full((first.shape[0],), float("nan"), device=x.device)
        stage_of = torch.full((first.shape[0],), -1, dtype=torch.int32, device=x.device)
        active = torch.arange(first.shape[0], device=x.device)
        logits, tiles_run = first, []
        for k in range(k_total):
            if k > 0:
                size = int(active.numel())  # the one host read per stage
                tiles_run.append(size)
                if size == 0:
                    continue
                out = resize(members[k](windows(x, grid, active)), grid.window)
                m = grid.margin
                logits = out[:, :, m:m + grid.tile[0], m:m + grid.tile[1]] if m else out
            ok = torch.isfinite(logits).reshape(logits.shape[0], -1).all(dim=1)
            probs = torch.softmax(torch.where(ok[:, None, None, None], logits, torch.zeros_like(logits)), dim=1)
            total[active[ok]] += probs[ok]
            count[active[ok]] += 1
            mean = total[active] / count[active].clamp(min=1)[:, None, None, None].float()
            c = tile_confidence(mean, confidence)
            last = k == k_total - 1
            exits = torch.ones_like(ok) if last else ok & (c >= torch.tensor(t[k], dtype=torch.float32))
            out_idx = active[exits]
            conf[out_idx] = torch.where(count[out_idx] > 0, c[exits], torch.full_like(c[exits], float("nan")))
            stage_of[out_idx] = k
            active = active[~exits]
        mean = total / count.clamp(min=1)[:, None, None, None].float()
        labels = torch.where(count[:, None, None] > 0, mean.argmax(dim=1), torch.full_like(mean[:, 0], -1).long())
        labels = merge(labels[:, None], grid, frame)[:, 0]
    return TorchTileResult(labels, merge(mean, grid, frame), conf.reshape(n, per_frame), stage_of.reshape(n, per_frame),
                           tiles_run)
