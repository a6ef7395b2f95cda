"""Run a member over a data split in batches (with a progress bar), through the output cache."""

from __future__ import annotations

import os

import numpy as np

from edge_committee._util import blas_single_thread, progress
from edge_committee.backend import runner_for
from edge_committee.data.readers import RawSplit
from edge_committee.evaluate.cache import OutputCache, sha256_file
from edge_committee.spec.preprocess import Preprocessing


def run_member(
    model_path: str | os.PathLike,
    preprocessing: Preprocessing,
    split: RawSplit | np.ndarray | list[np.ndarray],
    batch_size: int = 256,
    backend: str = "onnxrt",
    threads: int | None = None,
    desc: str = "",
) -> np.ndarray:
    """Logits (N, C) float32 of the model on every sample of ``split`` (a split or its raw images)."""
    images = split.images if isinstance(split, RawSplit) else split
    outs = []
    with runner_for(backend, model_path, threads=threads) as runner, blas_single_thread():
        starts = range(0, len(images), batch_size)
        for s in progress(starts, total=len(starts), desc=desc, unit="batch"):
            outs.append(runner.infer(preprocessing(images[s : s + batch_size])))
    return np.concatenate(outs, axis=0).astype(np.float32, copy=False)


def member_outputs(
    model_path: str | os.PathLike,
    preprocessing: Preprocessing,
    split: RawSplit,
    cache: OutputCache | None = None,
    batch_size: int = 256,
    backend: str = "onnxrt",
    threads: int | None = None,
    desc: str = "",
    model_sha256: str | None = None,
    data_hash: str | None = None,
) -> np.ndarray:
    """Like :func:`run_member`, but read from / written to ``cache`` when given."""
    if cache is None:
        return run_member(model_path, preprocessing, split, batch_size, backend, threads, desc)
    key = cache.key(
        model_sha256 or sha256_file(model_path),
        preprocessing.to_dict(),
        data_hash or split.content_hash(),
        backend,
    )
    hit = cache.get(key)
    if hit is not None and hit.shape[0] == len(split):
        return hit
    out = run_member(model_path, preprocessing, split, batch_size, backend, threads, desc)
    cache.put(key, out)
    return out


def nonfinite_rows(logits: np.ndarray) -> int:
    """Number of samples whose logits hold a NaN or an infinity."""
    return int((~np.isfinite(np.asarray(logits))).any(axis=1).sum()) if len(logits) else 0


def accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Top-1 accuracy in [0, 1], or None without labels."""
    if labels is None:
        return None
    return float(np.mean(np.asarray(logits).argmax(axis=1) == np.asarray(labels)))



