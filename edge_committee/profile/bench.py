"""``bench``: the chosen cascade end to end next to single members, as a user runs them.

Every contender runs through the facade (:func:`edge_committee.load` with the same backend and
threads), so a cascade backend (fused ONNX, CUDA graph) is benched exactly as a member backend.
The contenders: the bundle's chosen committee, its largest member alone (most MACs) and its most
accurate single member alone (validation accuracy); a single member runs as a one-stage bundle
view of the same files. Per batch size the data is cut into consecutive full batches; after a
warm-up the contenders take turns on the same blocks of consecutive batches (round-robin, the
order rotating, a block about 0.25 s of the slowest contender; see :func:`run_round_robin`), so a
burst of load from other processes hits them alike. Per contender and batch size: images/s, latency
p50/p90/p99/mean of one ``predict`` call, test accuracy, and (with a profile of this device) the
cost model's predicted mean latency next to the measured one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_committee.bundle import read_manifest
from edge_committee.errors import EdgeCommitteeError
from edge_committee.profile.views import member_view
from edge_committee.runtime import CascadeModel

LOG = logging.getLogger("edge_committee")
DEFAULT_BATCHES = (1, 64)


@dataclasses.dataclass(frozen=True)
class Contender:
    """One thing benched: a role ("cascade", "largest", "most accurate") and its members."""

    role: str
    members: tuple[str, ...]
    thresholds: tuple[float, ...] = ()

    @property
    def label(self) -> str:
        return " > ".join(self.members)


def contenders(manifest: dict, extra: Sequence[str] = ()) -> list[Contender]:
    """The chosen committee, the largest member (MACs; FP32 first), the most accurate single
    member (validation) and the ``extra`` members asked for, each once (a member with several
    roles is benched once, under all of them)."""
    c = manifest["cascade"]
    k = len(c["members"])
    out = [Contender("cascade", tuple(c["members"]), tuple(float(t) for t in c["thresholds"][: k - 1]))]
    members = manifest["members"]
    largest = max(members, key=lambda m: (m["macs"], m["precision"] == "fp32"))
    scored = [m for m in members if (m.get("accuracy") or {}).get("validation") is not None]
    roles = {largest["name"]: ["largest"]}
    if scored:
        best = max(scored, key=lambda m: (m["accuracy"]["validation"], -m["macs"]))
        roles.setdefault(best["name"], []).append("most accurate")
    names = [m["name"] for m in members]
    for name in extra:
        if name not in names:
            raise EdgeCommitteeError(f"--member {name!r}: the bundle has no such member; its members: "
                                     f"{', '.join(names)}")
        roles.setdefault(name, []).append("asked")
    out += [Contender(" & ".join(r), (name,)) for name, r in roles.items()]
    return out


def _batches(images, batch: int, limit: int | None) -> list:
    n = len(images) if limit is None else min(limit, len(images))
    return [images[i : i + batch] for i in range(0, n - batch + 1, batch)]


def run_round_robin(models: Sequence, images, batch: int, warmup: int = 3, limit: int | None = None,
                    turn_s: float = 0.25, clock=time.perf_counter) -> tuple[list[np.ndarray], list[list]]:
    """Time ``predict`` of each model on the same consecutive full batches, the models taking turns.

    Each round, every model runs the same next block of consecutive batches, the order rotating
    from round to round; a block is as many batches as the slowest model runs in about ``turn_s``
    seconds (at least one; from the calls so far). So load from other processes hits every model
    alike and all move through the data together, while each model runs in its own steady state:
    with one call per turn the other models would evict its data from the CPU caches before every
    call, which no deployment does. ``turn_s=0``: one batch per turn.

    Returns (per model: (num_batches,) ms per call, per model: the Predictions in batch order).
    """
    batches = _batches(images, batch, limit)
    if not batches:
        n = len(images) if limit is None else min(limit, len(images))
        raise EdgeCommitteeError(f"bench needs at least {batch} images for batch size {batch}; got {n}"
                                 + (f" (--limit {limit})" if limit is not None and limit < len(images) else ""))
    for m in models:
        for x in batches[:warmup]:
            m.predict(x)
    n = len(batches)
    ms = [np.zeros(n) for _ in models]
    preds: list[list] = [[None] * n for _ in models]
    start = 0
    for rnd in itertools.count():
        if start >= n:
            break
        slowest = max(float(t[:start].mean()) for t in ms) / 1e3 if start else 0.0
        stop = min(n, start + (max(1, int(turn_s / slowest)) if slowest > 0 else 1))
        for j in np.roll(np.arange(len(models)), -rnd):  # rotate who goes first
            for i in range(start, stop):
                t0 = clock()
                preds[j][i] = models[j].predict(batches[i])
                ms[j][i] = (clock() - t0) * 1e3
        start = stop
    return ms, preds


def latency_stats(ms: np.ndarray, batch: int) -> dict:
    """images/s and p50/p90/p99/mean ms of one call."""
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"calls": int(ms.size), "images_per_s": float(batch * ms.size / (ms.sum() / 1e3)),
            "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(ms.mean())}


def prediction_stats(preds: list, labels: np.ndarray | None, stages: int) -> dict:
    """Accuracy (if labels) and exits per stage of the concatenated predictions."""
    pred = np.concatenate([p.labels for p in preds])
    exits = np.concatenate([p.exit_stage for p in preds])
    out = {"images": int(pred.size), "exit_histogram": np.bincount(exits, minlength=stages).tolist()}
    if labels is not None:
        out["accuracy"] = float(np.mean(pred == labels[: pred.size]))
    return out


def predicted(profile: dict, contender: Contender, batch: int, manifest: dict, measured_hist: list[int]) -> dict:
    """Cost-model figures (ms) from a profile document:

    - ``mean_ms``: mean timings, the validation exit histogram (what selection costs);
    - ``mean_ms_measured_exits``: mean timings, the exits measured here;
    - ``mean_ms_median_timings``: median timings, the validation exits (leaves out the calls
      other processes interrupt: on a loaded machine, below the measured mean);
    - ``worst_ms``: p90 timings, every stage on the whole batch (a worst-case budget's view).
    """
    from edge_committee.profile.costmodel import LatencyModel

    members = contender.members
    hist = (manifest["cascade"].get("exit_histogram") or measured_hist) if len(members) > 1 else [1]
    mean, median = (LatencyModel.from_profile(profile, s) for s in ("mean_ms", "median_ms"))
    return {"mean_ms": mean.mean(members, batch, hist),
            "mean_ms_measured_exits": mean.mean(members, batch, measured_hist if len(members) > 1 else [1]),
            "mean_ms_median_timings": median.mean(members, batch, hist),
            "worst_ms": LatencyModel.from_profile(profile, "p90_ms").worst(members, batch)}


def bench_bundle(root: str | os.PathLike, images, labels: np.ndarray | None,
                 batch_sizes: Sequence[int] = DEFAULT_BATCHES, backend: str = "onnxrt",
                 threads: int | None = None, *, warmup: int = 3, limit: int | None = None,
                 profile: dict | None = None, show_progress: bool = True, manifest: dict | None = None,
                 members: Sequence[str] = (),
                 **options) -> dict:
    """Bench the bundle's committee against its largest and most accurate single members.

    Args:
        root: the bundle. ``images``: raw uint8 images (N, H, W, C) or a list; ``labels``: (N,) or None.
        batch_sizes: default 1 and 64. ``backend``/``threads``/``options``: as :func:`edge_committee.load`.
        warmup: untimed batches per contender and batch size (default 3).
        limit: use the first ``limit`` images (default all).
        profile: a profile document for the cost model's predictions, e.g. from
            :func:`device_profile`; None: no predictions.
        manifest: the bundle's manifest as :func:`read_manifest` returned it (checksums verified);
            None: read and verify it here.
        members: more members to bench alone (``bench --member``).

    Returns a JSON-ready dict (see :func:`edge_committee.profile.report.bench_markdown`).
    """
    from edge_committee.profile.fingerprint import fingerprint
    from edge_committee.profile.profiler import parse_batches

    root = Path(root)
    manifest = manifest if manifest is not None else read_manifest(root)  # verified once, here or by the caller
    who = contenders(manifest, members)
    results = []
    with contextlib.ExitStack() as stack:
        views = [root if c.role == "cascade" else stack.enter_context(member_view(root, manifest, c.members))
                 for c in who]
        runtimes = [stack.enter_context(CascadeModel(v, backend=backend, threads=threads, verify=False, **options))
                    for v in views]  # CascadeModel is what edge_committee.load returns
        for b in _progress(parse_batches(batch_sizes), show_progress):
            ms, preds = run_round_robin(runtimes, images, b, warmup, limit)
            for c, t, p in zip(who, ms, preds):
                row = {"batch": b, "role": c.role, "members": list(c.members), **latency_stats(t, b),
                       **prediction_stats(p, labels, len(c.members))}
                if profile is not None:
                    row["predicted"] = predicted(profile, c, b, manifest, row["exit_histogram"])
                results.append(row)
    return {
        "schema": "edge_committee.bench/1",
        "bundle": str(root), "backend": backend, "threads": threads,
        "fingerprint": fingerprint(backend, threads),
        "profile": profile["name"] if profile else None, "load_avg": list(os.getloadavg()), "warmup_batches": warmup,
        "images": int(len(images) if limit is None else min(limit, len(images))),
        "cascade": {k: manifest["cascade"].get(k) for k in ("members", "thresholds", "objective", "budget",
                                                             "cost_unit", "cost_model", "exit_histogram")},
        "results": results,
    }


def device_profile(root: str | os.PathLike, manifest: dict, profile: str | None, backend: str,
                   threads: int | None) -> dict | None:
    """The profile for predictions: ``profile`` (a name in the bundle or a file), else this
    device's; None with a note when this device has none and none was given."""
    from edge_committee.profile.store import resolve_profile

    try:
        return resolve_profile(root, manifest, profile, backend, threads)[1]
    except EdgeCommitteeError as exc:
        if profile is not None:
            raise
        LOG.warning("no cost-model predictions: %s", exc)
        return None


def _progress(items: list, enabled: bool):
    if not enabled:
        return items
    from edge_committee._util import progress

    return progress(items, total=len(items), desc="bench", unit="batch size")
