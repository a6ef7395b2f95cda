"""Quick measured checks at build and select time: costs that MACs leave out.

MACs count the members' multiply-adds, not the preprocessing each member runs on the raw image,
nor the per-stage work of a cascade (gather, gate). On real photos or camera frames those can
cost more than the member itself, so a cascade chosen by MACs may not be faster end to end than
the largest member. Two checks, each about a second on a CPU:

- :func:`preprocess_costs`: each member's preprocessing, in ms per image, on a few validation
  images at their own size (at most 64 and 64 MB of pixels, fewer when a call would outlast a
  fifth of the time share), NumPy's BLAS on one thread as the runtime runs it; the build report
  shows it next to the MACs;
- :func:`end_to_end_check`: the chosen cascade and the largest member (most MACs) run by the host
  loop (preprocessing + ONNX Runtime, 1 thread, the averaging gate) on the same validation images
  (at least 8, as many as one call of the largest runs in about 0.1 s, at most 64), taking turns,
  until both medians are stable or about a second has passed; :func:`slower_warning` is the
  one-line warning when the cascade is not faster.

A learned combiner's own step is left out (the averaging gate stands in for it); both checks are
skipped, returning None, when no validation images can be read.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edge_committee._util import blas_single_thread

LOG = logging.getLogger("edge_committee")

#: seconds the end-to-end check takes turns for (the preprocessing check takes 0.3 of it); the
#: environment variable EDGE_COMMITTEE_CHECK_S overrides it, 0 skips both checks
CHECK_S = 1.0
#: most validation images a check runs on (one batch)
MAX_IMAGES = 64
#: most bytes of raw images a check holds
MAX_BYTES = 64 << 20
#: the end-to-end batch is sized so that one call of the largest member lasts about this long (s)
TARGET_CALL_S = 0.1
#: fewest images the end-to-end check runs on (fewer only when the split has fewer)
MIN_IMAGES = 8


def check_seconds() -> float:
    """:data:`CHECK_S`, or the environment's ``EDGE_COMMITTEE_CHECK_S``."""
    try:
        return max(0.0, float(os.environ.get("EDGE_COMMITTEE_CHECK_S", CHECK_S)))
    except ValueError:
        return CHECK_S


def validation_images(images=None, manifest: dict | None = None, n: int = MAX_IMAGES):
    """Up to ``n`` raw validation images as one uint8 (N, H, W, C) array (those of the first image's
    size when sizes differ): from ``images`` (a split's images: array, list or lazy files), else
    from the split the manifest records; None when there are none."""
    if images is None and manifest is not None:
        images = _recorded_validation(manifest)
    if images is None or len(images) == 0:
        return None
    one = np.asarray(images[0])
    n = min(n, len(images), max(1, MAX_BYTES // max(1, one.nbytes)))  # 1080p frames: 10 of them
    first = images[:n]
    if isinstance(first, np.ndarray):
        return first if first.ndim == 4 else first[..., None]
    batch = [im if im.ndim == 3 else im[..., None] for im in map(np.asarray, first)]
    return np.stack([im for im in batch if im.shape == batch[0].shape])


def _recorded_validation(manifest: dict):
    from edge_committee.data.readers import read_split
    from edge_committee.errors import EdgeCommitteeError

    entry = ((manifest.get("data") or {}).get("validation") or {})
    if "source" not in entry:
        return None
    try:
        return read_split(entry["source"], Path("/"), manifest.get("labels"), "data.validation").images
    except (EdgeCommitteeError, OSError) as exc:
        LOG.debug("validation images not readable for the quick checks: %s", exc)
        return None


def _ms_per_call(fn: Callable[[], object], budget_s: float) -> float:
    """Median wall ms of ``fn()`` by the profiler's rule, stopping early once stable (at least a
    sixth of ``budget_s``, at most ``budget_s``)."""
    from edge_committee.profile.timing import TimingConfig, measure

    cfg = TimingConfig(warmup_s=0.0, min_warmup=1, min_iters=3, min_time_s=budget_s / 6, max_time_s=budget_s,
                       check_s=budget_s / 20)
    return float(np.median(measure(fn, cfg)[0]))


def preprocess_costs(members: Sequence[dict], images: np.ndarray | None, budget_s: float | None = None) -> dict:
    """{member name: {"ms_per_image", "source_shape"}}: each member's preprocessing of
    ``images`` (raw uint8, their own size), median over about ``budget_s`` seconds shared by the
    distinct preprocessings (precision variants of one model share theirs)."""
    from edge_committee.spec.preprocess import Preprocessing

    budget_s = 0.3 * check_seconds() if budget_s is None else budget_s
    if images is None or len(images) == 0 or budget_s <= 0:
        return {}
    pps = {m["name"]: Preprocessing.from_dict(m["preprocessing"]) for m in members}
    distinct = list(dict.fromkeys(pps.values()))
    per = budget_s / max(1, len(distinct))
    ms = {}
    with blas_single_thread():
        for pp in distinct:
            x = images[: _fitting(lambda pp=pp: pp(images[:1]), per / 5, len(images))]
            ms[pp] = _ms_per_call(lambda pp=pp, x=x: pp(x), per) / len(x)
    shape = [int(d) for d in images.shape[1:]]
    return {n: {"ms_per_image": round(ms[pp], 5), "source_shape": shape} for n, pp in pps.items()}


def _fitting(one_image: Callable[[], object], call_s: float, most: int) -> int:
    """How many images one call can take and last about ``call_s`` seconds (1 to ``most``), from a
    warm call on one image: a large frame's slow preprocessing then keeps the check short."""
    one_image()
    t0 = time.perf_counter()
    one_image()
    return int(np.clip(call_s / max(time.perf_counter() - t0, 1e-7), 1, most))


def _loop(root: Path, manifest: dict, names: Sequence[str], thresholds: Sequence[float]):
    from edge_committee.backend import runner_for
    from edge_committee.runtime.cascade import HostLoop, _gate_step_fn
    from edge_committee.spec.preprocess import Preprocessing

    by_name = {m["name"]: m for m in manifest["members"]}
    runners = [runner_for("onnxrt", root / by_name[n]["file"], name=n, threads=1) for n in names]
    pps = [Preprocessing.from_dict(by_name[n]["preprocessing"]) for n in names]
    confidence = (manifest.get("cascade") or {}).get("confidence", "max_prob")
    loop = HostLoop(runners, pps, list(thresholds), confidence, list(manifest["labels"]), _gate_step_fn("auto")[0])
    loop.activate()
    return loop


def largest_member(manifest: dict) -> dict:
    """The member with the most MACs (FP32 first), as the report and ``bench`` name it."""
    fp32 = [m for m in manifest["members"] if m["precision"] == "fp32"] or manifest["members"]
    return max(fp32, key=lambda m: m["macs"])


def end_to_end_check(root: str | Path, manifest: dict, images: np.ndarray | None,
                     budget_s: float | None = None) -> dict | None:
    """The chosen cascade vs the largest member, end to end on this machine (see the module
    docstring): ``{"cascade_ms_per_image", "largest_ms_per_image", "largest", "images", "faster"}``,
    or None when there are no images or the chosen committee is not a cascade of several members."""
    c = manifest["cascade"]
    largest = largest_member(manifest)["name"]
    budget_s = check_seconds() if budget_s is None else budget_s
    if images is None or len(images) == 0 or len(c.get("members", [])) < 2 or budget_s <= 0:
        return None
    root = Path(root)
    names, thresholds = list(c["members"]), list(c["thresholds"])[: len(c["members"]) - 1]
    cascade, single = _loop(root, manifest, names, thresholds), _loop(root, manifest, [largest], [])
    try:
        with blas_single_thread():
            n = max(MIN_IMAGES, _fitting(lambda: single.run(images[:1]), TARGET_CALL_S, len(images)))
            n = min(n, len(images))
            x = np.ascontiguousarray(images[:n])
            ms = _take_turns([lambda: cascade.run(x), lambda: single.run(x)], budget_s)
            exits = np.bincount(cascade.run(x).exit_stage, minlength=len(names))
    finally:
        cascade.deactivate()
        single.deactivate()
    return {"cascade_ms_per_image": round(ms[0] / n, 5), "largest_ms_per_image": round(ms[1] / n, 5),
            "largest": largest, "images": n, "exits": [int(e) for e in exits], "faster": bool(ms[0] < ms[1]),
            "method": "host loop, preprocessing + ONNX Runtime (1 thread), validation images, medians of "
                      "alternating calls"}


def _take_turns(fns: Sequence[Callable[[], object]], budget_s: float, min_rounds: int = 3) -> list[float]:
    """Median ms per call of each of ``fns``, called in turns (so a burst of load hits all alike), for
    at least a tenth of ``budget_s`` and until every series is stable (:func:`~.timing.is_stable`,
    5 %), at most ``budget_s``."""
    from edge_committee.profile.timing import is_stable

    for f in fns:
        f()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    while True:
        for f, t in zip(fns, times):
            t0 = time.perf_counter()
            f()
            t.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start
        if len(times[0]) >= min_rounds and (elapsed >= budget_s or (
                elapsed >= budget_s / 10 and all(is_stable(t, 0.05) for t in times))):
            return [float(np.median(t)) for t in times]


def slower_warning(check: dict | None, manifest: dict) -> str | None:
    """One line when a MACs-chosen cascade is not faster end to end than the largest member."""
    c = manifest["cascade"]
    if not check or check["faster"] or c.get("cost_unit") != "MACs":
        return None
    return (f"the cascade chosen by MACs ({' > '.join(c['members'])}) is not faster end to end than the largest "
            f"member {check['largest']} on this machine: {check['cascade_ms_per_image']:.3g} vs "
            f"{check['largest_ms_per_image']:.3g} ms per image (preprocessing + ONNX Runtime, 1 thread, "
            f"{check['images']} validation images); MACs leave out preprocessing and per-stage work: run "
            "'edge-committee profile' and select with --budget-ms")
