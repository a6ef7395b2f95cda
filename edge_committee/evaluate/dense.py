"""Segmentation members on a labelled split: per-tile statistics that selection needs.

Selection of a tile cascade needs, for every member sequence (chain) it may choose and every
prefix of it, each tile's confidence and the tile's confusion matrix if it exited there. A member
is seen two ways: first in a chain it runs on the whole frame (``full``), later in a chain on tile
windows (``window``); both are computed here, frame batch by frame batch, with the same functions
and in the same order as the runtime's gate (:mod:`edge_committee.cascade.tiles`), so the
thresholds selection picks mean the same at run time.

Memory stays bounded by a frame batch: only per-tile confidences (float32) and per-tile confusion
matrices (int32, C x (C + 1)) are kept.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Sequence

import numpy as np

from edge_committee.cascade.tiles import (
    TileGrid,
    argmax_classes,
    dense_softmax,
    resize_logits,
    tile_confidence_fn,
)
from edge_committee.errors import EdgeCommitteeError

#: a member's logits for a batch of preprocessed inputs (n, Ch, H, W) -> (n, C, h, w)
Infer = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass
class PrefixStats:
    """One chain prefix on one split: per tile (flat index ``n * T + t``)."""

    conf: np.ndarray  #: (tiles,) float32 tile confidence of the running mean after this stage
    ok: np.ndarray  #: (tiles,) bool: this stage's logits were finite for the tile (it may exit here)
    cm: np.ndarray  #: (tiles, C, C + 1) int32 confusion matrix of the tile if it exits here


@dataclasses.dataclass
class DenseSplitStats:
    """Everything selection reads about one split."""

    frames: int
    tiles_per_frame: int
    num_classes: int
    prefixes: dict[tuple[str, ...], PrefixStats]  #: chain prefix -> its statistics
    tiled_cm: dict[str, np.ndarray]  #: member -> (C, C + 1) confusion matrix when run on every tile window

    def full_cm(self, member: str) -> np.ndarray:
        """(C, C + 1) confusion matrix of ``member`` alone on whole frames."""
        return self.prefixes[(member,)].cm.sum(axis=0)


def chains(names: Sequence[str], max_len: int, order: str = "cheapest_first",
           costs: dict[str, float] | None = None) -> list[tuple[str, ...]]:
    """Member sequences of 2..max_len: in cost order (``cheapest_first``) or every permutation (``any``)."""
    out: list[tuple[str, ...]] = []
    ranked = sorted(names, key=lambda n: (costs or {}).get(n, 0.0)) if order == "cheapest_first" else list(names)
    for k in range(2, min(max_len, len(names)) + 1):
        groups = itertools.combinations(ranked, k) if order == "cheapest_first" else itertools.permutations(ranked, k)
        out.extend(groups)
    return out


def _window_probs(infer: Infer, x: np.ndarray, grid: TileGrid, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(tile probabilities, finite flags) of a member run on every tile window of ``x`` (n, Ch, H, W)."""
    count = x.shape[0] * grid.count(x.shape[-2:])
    probs, ok = [], []
    for start in range(0, count, batch):
        idx = np.arange(start, min(count, start + batch))
        logits = grid.centre(resize_logits(infer(grid.windows(x, idx)), grid.window))
        finite = np.isfinite(logits).reshape(len(idx), -1).all(axis=1)
        probs.append(np.where(finite[:, None, None, None], dense_softmax(np.where(np.isfinite(logits), logits, 0)), 0))
        ok.append(finite)
    return np.concatenate(probs), np.concatenate(ok)


def _full_probs(infer: Infer, x: np.ndarray, grid: TileGrid) -> tuple[np.ndarray, np.ndarray]:
    logits = grid.split(resize_logits(infer(x), x.shape[-2:]))
    finite = np.isfinite(logits).reshape(len(logits), -1).all(axis=1)
    return np.where(finite[:, None, None, None], dense_softmax(np.where(np.isfinite(logits), logits, 0)), 0), finite


def _tile_cms(labels: np.ndarray, target_tiles: np.ndarray, c: int, ignore_index: int | None) -> np.ndarray:
    """(tiles, C, C + 1) int32 confusion matrices, one per tile."""
    tiles = labels.shape[0]
    t = target_tiles.reshape(tiles, -1).astype(np.int64)
    p = labels.reshape(tiles, -1).astype(np.int64)
    keep = (t >= 0) & (t < c)
    if ignore_index is not None:
        keep &= t != ignore_index
    p = np.where((p >= 0) & (p < c), p, c)
    tile = np.broadcast_to(np.arange(tiles)[:, None], t.shape)
    flat = (tile * c + t) * (c + 1) + p
    return np.bincount(flat[keep], minlength=tiles * c * (c + 1)).reshape(tiles, c, c + 1).astype(np.int32)


def split_stats(
    members: dict[str, tuple[Infer, Callable[[np.ndarray], np.ndarray]]],
    images,
    targets: np.ndarray,
    grid: TileGrid,
    num_classes: int,
    sequences: Sequence[tuple[str, ...]],
    confidence: str = "mean_max_prob",
    ignore_index: int | None = None,
    batch_frames: int = 8,
    window_batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> DenseSplitStats:
    """Per-tile statistics of every single member and every prefix of ``sequences`` on one split.

    Args:
        members: name -> (infer, preprocess): ``preprocess`` maps raw uint8 frames to the member's
            input (n, Ch, H, W); ``infer`` maps that to logits (n, C, h, w).
        images: the split's raw frames (anything ``preprocess`` takes, sliced by frame).
        targets: (N, H, W) integer class maps on the members' input grid.
    """
    n_frames = len(images)
    frame = tuple(targets.shape[1:])
    tiles_per_frame = grid.count(frame)
    conf_fn = tile_confidence_fn(confidence)
    c = num_classes
    wanted_full = {s[0] for s in sequences} | set(members)
    wanted_window = {m for s in sequences for m in s[1:]} | set(members)
    prefixes = {p for s in sequences for p in (s[:j] for j in range(1, len(s) + 1))} | {(m,) for m in members}
    parts: dict[tuple[str, ...], list[PrefixStats]] = {p: [] for p in prefixes}
    tiled = {m: np.zeros((c, c + 1), np.int64) for m in members}
    for start in range(0, n_frames, batch_frames):
        stop = min(n_frames, start + batch_frames)
        target_tiles = grid.split(np.asarray(targets[start:stop])[:, None])
        full, window = {}, {}
        for name, (infer, preprocess) in members.items():
            x = preprocess(images[start:stop])
            if tuple(x.shape[-2:]) != frame:
                raise EdgeCommitteeError(
                    f"member {name!r}: its input is {x.shape[-2]}x{x.shape[-1]} but the split's class maps are "
                    f"{frame[0]}x{frame[1]}; give class maps on the members' input grid (preprocessing.size)")
            if name in wanted_full:
                full[name] = _full_probs(infer, x, grid)
            if name in wanted_window:
                window[name] = _window_probs(infer, x, grid, window_batch)
                labels = window[name][0].argmax(axis=1)
                tiled[name] += _tile_cms(np.where(window[name][1][:, None, None], labels, -1), target_tiles, c,
                                         ignore_index).sum(axis=0)
        for p in sorted(prefixes, key=len):
            total = np.zeros_like(full[p[0]][0])
            count = np.zeros(len(total), np.int32)
            for j, name in enumerate(p):
                probs, ok = full[name] if j == 0 else window[name]
                total[ok] += probs[ok]
                count += ok
            mean = total / np.maximum(count, 1)[:, None, None, None].astype(np.float32)
            labels = np.where(count[:, None, None] > 0, argmax_classes(mean), -1)
            ok = (full[p[0]] if len(p) == 1 else window[p[-1]])[1]
            parts[p].append(PrefixStats(np.asarray(conf_fn(mean), np.float32), ok,
                                        _tile_cms(labels, target_tiles, c, ignore_index)))
        if progress:
            progress(stop, n_frames)
    joined = {p: PrefixStats(*(np.concatenate([getattr(s, f) for s in v]) for f in ("conf", "ok", "cm")))
              for p, v in parts.items()}
    return DenseSplitStats(n_frames, tiles_per_frame, c, joined, tiled)


#: the file in a segmentation bundle that keeps the per-tile statistics (``select`` chooses again from it)
STATS_FILE = "tile_stats.npz"


def save_stats(path, stats: dict[str, DenseSplitStats]) -> None:
    """Write every split's statistics to ``path`` (compressed npz; names in a JSON index, no pickles)."""
    import json

    arrays, index = {}, {}
    for split, s in stats.items():
        prefixes = list(s.prefixes)
        index[split] = {"frames": s.frames, "tiles_per_frame": s.tiles_per_frame, "num_classes": s.num_classes,
                        "prefixes": [list(p) for p in prefixes], "tiled": list(s.tiled_cm)}
        for i, p in enumerate(prefixes):
            st = s.prefixes[p]
            arrays.update({f"{split}/{i}/conf": st.conf, f"{split}/{i}/ok": st.ok, f"{split}/{i}/cm": st.cm})
        for i, name in enumerate(s.tiled_cm):
            arrays[f"{split}/tiled/{i}"] = s.tiled_cm[name]
    arrays["index"] = np.array(json.dumps(index))
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_stats(path) -> dict[str, DenseSplitStats]:
    """What :func:`save_stats` wrote."""
    import json

    with np.load(path, allow_pickle=False) as z:
        index = json.loads(str(z["index"]))
        out = {}
        for split, meta in index.items():
            prefixes = {tuple(p): PrefixStats(z[f"{split}/{i}/conf"], z[f"{split}/{i}/ok"], z[f"{split}/{i}/cm"])
                        for i, p in enumerate(meta["prefixes"])}
            tiled = {name: z[f"{split}/tiled/{i}"] for i, name in enumerate(meta["tiled"])}
            out[split] = DenseSplitStats(meta["frames"], meta["tiles_per_frame"], meta["num_classes"], prefixes, tiled)
    return out
