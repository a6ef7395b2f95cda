"""The tile cascade for semantic segmentation, once, in NumPy: the reference for every runtime.

Members output dense logits ``(N, C, h, w)``; a member's logits are resized to its input's pixel
grid ``(H, W)`` (bilinear, half-pixel centres, as ``F.interpolate(..., align_corners=False)``)
when ``(h, w)`` differs. The frame's pixel grid is cut into a grid of tiles (:class:`TileGrid`:
tile size ``(th, tw)`` dividing ``(H, W)``, context ``margin`` px per side). The cascade
(Wang et al., "Wisdom of Committees", ICLR 2022, applied to segmentation):

1. member 0 runs once on the whole frame; every tile of every frame is active;
2. at stage ``k`` each active tile adds the softmax of member ``k``'s logits over its pixels to its
   running probability sum (as the classification gate adds per sample); the tile's prediction is
   the per-pixel mean over the stages that contributed, its confidence a *tile confidence*
   function of that mean (:data:`TILE_CONFIDENCE`; ``mean_max_prob``, the mean over the tile's
   pixels of the largest class probability, by default; any callable mapping (M, C, th, tw)
   probabilities to (M,) confidences can be used);
3. the tile exits if its confidence is ``>=`` the stage's threshold, or the stage is the last;
4. the tiles that continue go to member ``k + 1`` in ONE batched call, each as a window of
   ``(th + 2 margin, tw + 2 margin)`` pixels around the tile (reflect-padded at the frame's
   border, from the member's own preprocessed frame); only the window's centre tile is used.

Non-finite logits: a tile whose logits hold a NaN or +-Inf is *flagged*: that stage contributes
nothing to it and it does not exit early there (it still exits at the last stage; if no stage
contributed, its pixels' label is -1). This mirrors :mod:`.reference` for classification.

Costs (MACs per frame): member 0's MACs on the frame, plus, for each later stage, the tiles that
reach it times the member's MACs on one window.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

TileConfidence = Callable[[np.ndarray], np.ndarray]


def mean_max_prob(probs: np.ndarray) -> np.ndarray:
    """(M, C, th, tw) probabilities -> (M,) mean over the tile's pixels of the largest probability."""
    return np.asarray(probs, np.float32).max(axis=1).reshape(len(probs), -1).mean(axis=1, dtype=np.float64) \
        .astype(np.float32)


def p10_max_prob(probs: np.ndarray) -> np.ndarray:
    """(M, C, th, tw) -> (M,) 10th percentile over the tile's pixels of the largest probability."""
    mp = np.asarray(probs, np.float32).max(axis=1).reshape(len(probs), -1)
    return np.percentile(mp, 10, axis=1, method="lower").astype(np.float32)


#: tile confidence functions by name (higher is more confident)
TILE_CONFIDENCE: dict[str, TileConfidence] = {"mean_max_prob": mean_max_prob, "p10_max_prob": p10_max_prob}


def tile_confidence_fn(kind: str | TileConfidence) -> TileConfidence:
    """The tile confidence function named ``kind`` (or ``kind`` itself if it is callable)."""
    if callable(kind):
        return kind
    if kind not in TILE_CONFIDENCE:
        raise ValueError(f"unknown tile confidence {kind!r}; expected one of {', '.join(TILE_CONFIDENCE)} "
                         "or a function of (M, C, th, tw) probabilities")
    return TILE_CONFIDENCE[kind]


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """Tiles of ``tile`` = (th, tw) pixels over a frame, each run with ``margin`` px of context per side."""

    tile: tuple[int, int]
    margin: int = 0

    def __post_init__(self) -> None:
        th, tw = (int(x) for x in self.tile)
        if th <= 0 or tw <= 0 or self.margin < 0:
            raise ValueError(f"tile {self.tile} must be positive and margin {self.margin} >= 0")
        object.__setattr__(self, "tile", (th, tw))

    @property
    def window(self) -> tuple[int, int]:
        """(height, width) of the window a later member sees: the tile plus its margin on each side."""
        return self.tile[0] + 2 * self.margin, self.tile[1] + 2 * self.margin

    def shape(self, frame: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of tiles over a ``frame`` = (H, W) grid; ValueError if the tile does not divide it."""
        (h, w), (th, tw) = frame, self.tile
        if h % th or w % tw:
            raise ValueError(f"tile {th}x{tw} does not divide the frame {h}x{w}; choose a tile size that divides "
                             "the members' input size")
        if self.margin > min(h, w) - 1:
            raise ValueError(f"margin {self.margin} px needs a frame larger than {h}x{w} (reflect padding)")
        return h // th, w // tw

    def count(self, frame: tuple[int, int]) -> int:
        r, c = self.shape(frame)
        return r * c

    def split(self, dense: np.ndarray) -> np.ndarray:
        """(N, C, H, W) -> (N * T, C, th, tw), tiles in row-major order within each frame."""
        n, c, h, w = dense.shape
        (th, tw), (r, q) = self.tile, self.shape((h, w))
        x = dense.reshape(n, c, r, th, q, tw).transpose(0, 2, 4, 1, 3, 5)
        return x.reshape(n * r * q, c, th, tw)

    def merge(self, tiles: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
        """Inverse of :meth:`split`: (N * T, C, th, tw) -> (N, C, H, W)."""
        (th, tw), (r, q) = self.tile, self.shape(frame)
        c = tiles.shape[1]
        x = tiles.reshape(-1, r, q, c, th, tw).transpose(0, 3, 1, 4, 2, 5)
        return x.reshape(-1, c, frame[0], frame[1])

    def windows(self, frames: np.ndarray, tile_index: np.ndarray) -> np.ndarray:
        """Windows around tiles: ``frames`` (N, Ch, H, W) member inputs, ``tile_index`` (M,) flat indices
        ``n * T + t`` -> (M, Ch, th + 2m, tw + 2m), reflect-padded at the frame border."""
        n, ch, h, w = frames.shape
        (th, tw), (r, q), m = self.tile, self.shape((h, w)), self.margin
        tile_index = np.asarray(tile_index, np.int64)
        src = np.pad(frames, ((0, 0), (0, 0), (m, m), (m, m)), mode="reflect") if m else frames
        wh, ww = self.window
        out = np.empty((len(tile_index), ch, wh, ww), frames.dtype)
        for j, flat in enumerate(tile_index):
            f, t = divmod(int(flat), r * q)
            y, x = (t // q) * th, (t % q) * tw
            out[j] = src[f, :, y:y + wh, x:x + ww]
        return out

    def centre(self, window_dense: np.ndarray) -> np.ndarray:
        """(M, C, th + 2m, tw + 2m) -> (M, C, th, tw): the tile inside each window."""
        m = self.margin
        return window_dense[:, :, m:m + self.tile[0], m:m + self.tile[1]] if m else window_dense


# ------------------------------------------------------------------------------------ dense maths
def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, frac): output i = (1 - frac) * input[lo] + frac * input[hi], half-pixel centres
    (``align_corners=False``), clamped at the edges as PyTorch does."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def _resize_axis(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    lo, hi, frac = _linear_taps(x.shape[axis], size)
    shape = [1] * x.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    a, b = np.take(x, lo, axis=axis), np.take(x, hi, axis=axis)
    a *= 1 - frac  # two taps per output pixel: far cheaper than a dense interpolation matrix
    b *= frac
    a += b
    return a


def resize_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, C, h, w) -> (N, C, H, W) float32, bilinear with half-pixel centres (as PyTorch's
    ``F.interpolate(mode="bilinear", align_corners=False)``); returned as is when the size matches."""
    x = np.asarray(logits, np.float32)
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return _resize_axis(_resize_axis(x, size[1], 3), size[0], 2)


def dense_softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the class axis (1) in float32, max-subtracted."""
    x = np.asarray(logits, np.float32)
    e = x - x.max(axis=1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e


# ------------------------------------------------------------------------------------ the gate
@dataclasses.dataclass
class TileState:
    """What the tile cascade carries between stages, indexed by flat tile index ``n * T + t``.

    Attributes:
        prob_sum: (N * T, C, th, tw) float32 running sum of member probabilities per tile.
        count: (N * T,) int32 stages that contributed to each tile.
        conf: (N * T,) float32 tile confidence at exit, NaN until the tile exits.
        exit_stage: (N * T,) int32 stage at which the tile exited, -1 until then.
        flag: (N * T,) int32, 1 if some stage gave the tile non-finite logits.
        active: (M,) int64 flat indices of the tiles still running, in order.
    """

    prob_sum: np.ndarray
    count: np.ndarray
    conf: np.ndarray
    exit_stage: np.ndarray
    flag: np.ndarray
    active: np.ndarray

    @classmethod
    def start(cls, num_tiles: int, num_classes: int, tile: tuple[int, int]) -> "TileState":
        return cls(prob_sum=np.zeros((num_tiles, num_classes, *tile), np.float32),
                   count=np.zeros(num_tiles, np.int32),
                   conf=np.full(num_tiles, np.nan, np.float32),
                   exit_stage=np.full(num_tiles, -1, np.int32),
                   flag=np.zeros(num_tiles, np.int32),
                   active=np.arange(num_tiles, dtype=np.int64))

    def mean_probs(self) -> np.ndarray:
        """(N * T, C, th, tw) mean probabilities over the contributing stages (zeros where none did)."""
        return self.prob_sum / np.maximum(self.count, 1)[:, None, None, None].astype(np.float32)


def tile_gate_step(state: TileState, tile_logits: np.ndarray, stage: int, num_stages: int,
                   threshold: float, confidence: str | TileConfidence = "mean_max_prob") -> TileState:
    """Apply member ``stage``'s logits for the active tiles, (M, C, th, tw) on the tile grid, in place.

    The exiting tiles get their confidence and exit stage; ``state.active`` keeps the survivors in
    order. ``threshold`` is ignored at the last stage (every tile exits). Exit rule: ``conf >= t``.
    """
    idx = state.active
    x = np.asarray(tile_logits)
    if x.shape != (len(idx), *state.prob_sum.shape[1:]):
        raise ValueError(f"stage {stage}: tile logits have shape {x.shape}, expected "
                         f"{(len(idx), *state.prob_sum.shape[1:])} for the active tiles")
    ok = np.isfinite(x).reshape(len(idx), -1).all(axis=1)
    if ok.all() and len(idx) == len(state.count) and not state.count.any():
        # the first stage with every tile active and finite: the same sums without gathers
        state.prob_sum = dense_softmax(x)  # 0 + p == p: the sum after one stage, without the add
        state.count += 1
        mean = state.prob_sum  # count is 1 everywhere: the mean is the sum (x / 1 == x)
    else:
        state.prob_sum[idx[ok]] += dense_softmax(x[ok])
        state.count[idx[ok]] += 1
        state.flag[idx[~ok]] = 1
        mean = state.prob_sum[idx] / np.maximum(state.count[idx], 1)[:, None, None, None].astype(np.float32)
    conf = np.asarray(tile_confidence_fn(confidence)(mean), np.float32)
    exits = np.ones(len(idx), bool) if stage == num_stages - 1 else ok & (conf >= np.float32(threshold))
    out = idx[exits]
    state.conf[out] = np.where(state.count[out] > 0, conf[exits], np.float32(np.nan))
    state.exit_stage[out] = stage
    state.active = idx[~exits]
    return state


@dataclasses.dataclass
class TileCascadeResult:
    """What the tile cascade says about N frames of H x W pixels with T tiles each."""

    labels: np.ndarray  #: (N, H, W) int32 class per pixel (-1 where no member gave finite logits)
    probs: np.ndarray  #: (N, C, H, W) float32 mean probabilities at each tile's exit stage
    tile_confidence: np.ndarray  #: (N, T) float32 confidence of each tile at its exit
    tile_exit_stage: np.ndarray  #: (N, T) int32 stage at which each tile exited
    tile_flags: np.ndarray  #: (N, T) int32, 1 where some member gave a tile non-finite logits

    def tiles_run(self, stage: int) -> int:
        """Tiles that member ``stage`` ran on (stage >= 1; member 0 runs on whole frames)."""
        return int((self.tile_exit_stage >= stage).sum())


def argmax_classes(probs: np.ndarray) -> np.ndarray:
    """``probs.argmax(axis=1)`` for (M, C, h, w), ties to the lowest class, as int32: one pass per class
    (NumPy's argmax over a non-last axis copies the array first and is ~10x slower here)."""
    best = probs[:, 0].copy()
    label = np.zeros(best.shape, np.int32)
    for c in range(1, probs.shape[1]):
        better = probs[:, c] > best
        np.copyto(best, probs[:, c], where=better)
        label[better] = c
    return label


def finish(state: TileState, grid: TileGrid, frames: int, frame: tuple[int, int]) -> TileCascadeResult:
    """The result of a finished cascade (every tile exited)."""
    mean = state.mean_probs()
    labels = np.where(state.count[:, None, None] > 0, argmax_classes(mean), -1).astype(np.int32)
    t = len(state.count) // max(frames, 1)
    return TileCascadeResult(labels=grid.merge(labels[:, None], frame)[:, 0], probs=grid.merge(mean, frame),
                             tile_confidence=state.conf.reshape(frames, t),
                             tile_exit_stage=state.exit_stage.reshape(frames, t),
                             tile_flags=state.flag.reshape(frames, t))


def check_thresholds(thresholds: Sequence[float], num_stages: int) -> list[float]:
    t = [float(x) for x in thresholds]
    if len(t) not in (num_stages - 1, num_stages):
        raise ValueError(f"{num_stages} stages need {num_stages - 1} thresholds (one per stage but the last); "
                         f"got {len(t)}")
    return t + [float("inf")] * (num_stages - len(t))


def run_tile_cascade(frame_logits: np.ndarray, window_logits: Sequence[Callable[[np.ndarray], np.ndarray]],
                     grid: TileGrid, thresholds: Sequence[float],
                     confidence: str | TileConfidence = "mean_max_prob",
                     frame: tuple[int, int] | None = None) -> TileCascadeResult:
    """Run the tile cascade on N frames.

    Args:
        frame_logits: member 0's logits on the whole frames, (N, C, h, w) (resized to ``frame``).
        window_logits: for each later member, a function from flat tile indices (M,) to that
            member's logits on the tiles' windows, (M, C, h', w') (resized to the window size). It
            is called once per stage, with the tiles still active (none: not called).
        grid: the tile grid; ``frame``: the pixel grid (H, W) (default: member 0's output size).
        thresholds: one per stage but the last (``>=`` exits).
    """
    x0 = np.asarray(frame_logits)
    n, c = x0.shape[:2]
    frame = tuple(frame or x0.shape[-2:])
    k_total = 1 + len(window_logits)
    t = check_thresholds(thresholds, k_total)
    state = TileState.start(n * grid.count(frame), c, grid.tile)
    tile_gate_step(state, grid.split(resize_logits(x0, frame)), 0, k_total, t[0], confidence)
    for k, fn in enumerate(window_logits, start=1):
        if state.active.size == 0:
            break
        logits = resize_logits(np.asarray(fn(state.active.copy())), grid.window)
        tile_gate_step(state, grid.centre(logits), k, k_total, t[k], confidence)
    return finish(state, grid, n, frame)


def frame_macs(member_macs_frame: float, window_macs: Sequence[float], result: TileCascadeResult) -> float:
    """Mean MACs per frame: member 0 on the frame plus each later member's window MACs per tile it ran."""
    n = result.tile_exit_stage.shape[0]
    return float(member_macs_frame + sum(m * result.tiles_run(k + 1) / n for k, m in enumerate(window_macs)))


# ------------------------------------------------------------------------------------ metric
def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int | None = None) -> np.ndarray:
    """(C, C + 1) int64 counts of (true class, predicted class) pixel pairs; the last column counts
    pixels with no prediction (label -1: no member gave finite logits). Target pixels equal to
    ``ignore_index`` (or outside 0..C-1) are skipped."""
    t = np.asarray(target).reshape(-1).astype(np.int64)
    p = np.asarray(pred).reshape(-1).astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"prediction has {p.size} pixels, target {t.size}")
    keep = (t >= 0) & (t < num_classes)
    if ignore_index is not None:
        keep &= t != ignore_index
    t, p = t[keep], p[keep]
    p = np.where((p >= 0) & (p < num_classes), p, num_classes)
    cm = np.bincount(t * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1))
    return cm.reshape(num_classes, num_classes + 1)


def miou_from_confusion(cm: np.ndarray) -> float:
    """Mean over the classes present (in the target or the prediction) of intersection / union,
    from one confusion matrix (C, C) or (C, C + 1) (the extra column: pixels with no prediction,
    which count in their true class's union)."""
    cm = np.asarray(cm, np.float64)
    c = cm.shape[0]
    inter = np.diag(cm[:, :c])
    union = cm.sum(1) + cm[:, :c].sum(0) - inter
    present = union > 0
    return float(np.mean(inter[present] / union[present])) if present.any() else 0.0
