"""The teacher's side of self-training: unlabeled footage in, filtered and balanced soft labels out.

Noisy Student (Xie et al., CVPR 2020) labels unlabeled images with an un-noised teacher, keeps
the confident ones, and balances the classes (the most confident images of a class that has
too many, duplicates of a class that has too few), keeping the teacher's *soft* probabilities
as targets. On the edge, the teacher is the committee itself: every member of the bundle's
chosen committee run in full on the footage, combined as the committee combines (the mean of
probabilities, or the learned combiner of the whole committee).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from edge_committee.cascade import reference as ref
from edge_committee.errors import EdgeCommitteeError


def read_unlabeled(source: str | os.PathLike, max_frames: int = 20_000) -> np.ndarray | list[np.ndarray]:
    """Raw uint8 images of the footage.

    ``source``: a folder of images, an ``.npy`` array, an ``.npz`` (its ``x`` or ``images`` array),
    or any source :mod:`edge_committee.stream` opens: a video file, ``rtsp://``, ``v4l2://``,
    ``csi://``, ``test://`` (read until it ends or ``max_frames`` frames, default 20,000).
    """
    from edge_committee.data.readers import as_nhwc_uint8, read_folder

    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        return read_folder(path, None, False).images
    if path.suffix == ".npy" and path.is_file():
        return as_nhwc_uint8(np.load(path, allow_pickle=False), text)
    if path.suffix == ".npz" and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            key = next((k for k in ("x", "images") if k in z.files), None)
            if key is None:
                raise EdgeCommitteeError(f"{text}: no array 'x' or 'images' (has {', '.join(z.files)})")
            return as_nhwc_uint8(z[key], text)
    if "://" in text or path.is_file():
        return _read_stream(text, max_frames)
    raise EdgeCommitteeError(f"--unlabeled {text}: not found; give a folder of images, an .npy/.npz, a video file "
                             "or a stream URI")


def _read_stream(uri: str, max_frames: int) -> np.ndarray | list[np.ndarray]:
    """Frames of a video file or stream URI, read in order through ``edge_committee.stream``."""
    from edge_committee._util import progress
    from edge_committee.stream import open_source

    src = open_source(uri, frames="every")
    src.open()
    frames = []
    try:
        for _ in progress(range(max_frames), total=max_frames, desc="footage", unit="frame"):
            read = src.read()
            if read is None:
                break
            frames.append(np.asarray(read[0], np.uint8))
    finally:
        src.close()
    if not frames:
        raise EdgeCommitteeError(f"--unlabeled {uri}: the source gave no frames")
    frames = [f[..., None] if f.ndim == 2 else f for f in frames]
    return np.stack(frames) if len({f.shape for f in frames}) == 1 else frames


def teacher_probs(member_logits: list[np.ndarray], combiner=None) -> np.ndarray:
    """(N, C) the committee's probabilities: the mean of the members', or ``combiner``'s."""
    if combiner is not None:
        from edge_committee.cascade.learned import combine

        return combine(combiner, member_logits)
    return ref.ensemble(member_logits)


@dataclasses.dataclass
class PseudoLabels:
    """The footage samples a student learns from, with their soft targets.

    Attributes:
        index: (P,) int64 indices into the footage (with repeats where a class was duplicated).
        targets: (P, C) float32 the teacher's probabilities of those samples.
        confident: footage samples at or above the confidence threshold.
        per_class: (C,) samples per class after balancing.
    """

    index: np.ndarray
    targets: np.ndarray
    confident: int
    per_class: np.ndarray


def select_pseudo_labels(probs: np.ndarray, min_confidence: float = 0.6, per_class: int | None = None,
                         seed: int = 0) -> PseudoLabels:
    """Confidence-filter and class-balance the teacher's labels (Noisy Student's data balancing).

    A sample is kept if its top probability is at least ``min_confidence``. Each class then gets
    ``per_class`` samples (default: the median count over the classes that have any): its most
    confident ones if it has more, all of them plus seeded duplicates if it has fewer. A class
    the teacher never predicts confidently stays empty.
    """
    probs = np.asarray(probs, np.float32)
    conf, label = probs.max(axis=1), probs.argmax(axis=1)
    keep = np.flatnonzero(conf >= np.float32(min_confidence))
    if keep.size == 0:
        raise EdgeCommitteeError(
            f"no footage image reached the teacher confidence {min_confidence:g} (the most confident is "
            f"{float(conf.max()):.3f}); lower --min-confidence")
    c = probs.shape[1]
    counts = np.bincount(label[keep], minlength=c)
    target = int(per_class) if per_class else int(np.median(counts[counts > 0]))
    rng = np.random.default_rng(seed)
    chosen = []
    for k in np.flatnonzero(counts):
        mine = keep[label[keep] == k]
        mine = mine[np.argsort(-conf[mine], kind="stable")]
        if mine.size >= target:
            chosen.append(mine[:target])
        else:
            chosen.append(np.concatenate([mine, rng.choice(mine, target - mine.size, replace=True)]))
    index = np.concatenate(chosen).astype(np.int64)
    return PseudoLabels(index, probs[index], int(keep.size), np.bincount(label[index], minlength=c))
