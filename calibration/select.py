"""Choose which samples calibrate: ``count`` of ``n``, reproducible from ``seed``.

With labels the choice is stratified: every class gets its share of ``count`` in proportion to
its frequency (largest remainders break ties, so the shares add up to ``count`` exactly), and
the samples of a class are drawn at random within it. Without labels the draw is uniform.
"""

from __future__ import annotations

import numpy as np

from edge_committee.errors import EdgeCommitteeError


def select_indices(
    n: int, count: int | None, seed: int = 0, labels: np.ndarray | None = None
) -> np.ndarray:
    """Sorted int64 indices of the ``count`` samples (all ``n`` when ``count`` is None or >= n)."""
    if count is not None and count <= 0:
        raise EdgeCommitteeError(f"calibration count must be positive; got {count}")
    if n <= 0:
        raise EdgeCommitteeError("the calibration source has no samples")
    if count is None or count >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, size=count, replace=False)).astype(np.int64)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != n:
        raise EdgeCommitteeError(f"calibration source: {n} samples but {len(labels)} labels")
    return _stratified(labels, count, rng)


def _stratified(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    classes, freq = np.unique(labels, return_counts=True)
    quota = freq * (count / len(labels))
    take = np.floor(quota).astype(np.int64)
    # largest remainders first; ties go to the smaller class id (np.unique sorts classes)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: count - int(take.sum())]] += 1
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False)
        for c, k in zip(classes, take)
        if k > 0
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)
