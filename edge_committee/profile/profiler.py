"""Measure a bundle on this device: every member variant and the runtime's own overhead.

For each member and batch size the profiler times **one stage as the runtime runs it**:

- with a *member* backend (:func:`edge_committee.backend.runner_for`; ``onnxrt``): calls of the
  host loop (:class:`edge_committee.runtime.cascade.HostLoop`) with that member alone on
  consecutive batches of raw images (``stage``: gather, preprocessing, inference, gate, and the
  call's own work), and the member's inference inside those calls (``batches``: the runner's
  timing, plus the device compute time where the runner reports one);
- with a *cascade* backend (``onnxrt-fused``, ``torch-cuda``, ``tensorrt``...): calls of the
  facade (:class:`edge_committee.runtime.CascadeModel`) on a view of the bundle with that member
  alone (``stage``; such a backend does not time a member apart, so ``batches`` repeats it).

So every backend registered now or later is profiled the same way, with nothing of its own.

The runtime's overhead is also timed apart, per batch size, each part in a loop of its own:

- ``call``: one call of the loop with no stage (input checks, gate state, the result);
- ``gather``: compacting the raw images of the samples still active (``images[active]``);
- ``preprocess``: each member's preprocessing of raw images of the source size;
- ``gate``: one gate step (the C++ gate when built, else the NumPy reference, as the runtime).

Why both: in a loop of its own a part stays in the CPU caches; in the runtime it runs after a
member's inference has evicted them, and small Python/NumPy steps then take 3-8x longer
(preprocessing for the example's phi0: 0.019 ms alone, 0.16 ms right after a phi4 inference).
The cost model therefore uses the stage timings; the parts say where a stage's overhead goes.

**BLAS threads.** Every timing runs with NumPy's BLAS on one thread (``threadpoolctl``), as
:meth:`CascadeModel.predict <edge_committee.runtime.CascadeModel.predict>` runs every call large
enough for OpenBLAS to use threads. Timed with its threads, a preprocessing product is split
between two cores and the calling thread waits for the second half; when another process holds
the other core, that half waits for a turn (about a multiple of 4 ms here), so the same batch-64
preprocessing measured 0.46 ms or 8-16 ms from one run to the next, and the stage timings came
out slower than the runtime the cost model predicts (+28 %/+30 % error at batch 64; see
docs/latency.md).

Each figure follows the trtexec method of :mod:`.timing`. Nothing is written here: see
:func:`edge_committee.profile.store.write_profile`.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from edge_committee._util import blas_single_thread
from edge_committee.backend import runner_for
from edge_committee.bundle import read_manifest
from edge_committee.cascade.reference import GateState
from edge_committee.errors import EdgeCommitteeError
from edge_committee.profile.fingerprint import fingerprint
from edge_committee.profile.schema import SCHEMA, check_profile
from edge_committee.profile.timing import Timing, TimingConfig, measure, time_call
from edge_committee.spec.preprocess import Preprocessing

LOG = logging.getLogger("edge_committee")
DEFAULT_BATCHES = (1, 8, 64)
#: the timing rule used when none is given (a build with a latency budget uses it)
DEFAULT_TIMING = TimingConfig()


def parse_batches(text: str | Sequence[int]) -> list[int]:
    """``"1,8,64"`` (or a sequence) -> sorted distinct positive batch sizes. A repeated size counts
    once; an empty item (``1,,8``, a trailing comma) is refused: it is a typo more often than not."""
    items = text.split(",") if isinstance(text, str) else list(text)
    if isinstance(text, str) and text.strip() and any(not b.strip() for b in items):
        raise EdgeCommitteeError(f"batch sizes must be positive integers like 1,8,64; got {text!r} "
                                 "(an empty item between commas)")
    try:
        sizes = sorted({int(str(b).strip()) for b in items if str(b).strip()})
    except ValueError:
        raise EdgeCommitteeError(f"batch sizes must be positive integers like 1,8,64; got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise EdgeCommitteeError(f"batch sizes must be positive integers like 1,8,64; got {text!r}")
    return sizes


def source_shape(manifest: dict, images: np.ndarray | None = None) -> tuple[int, int, int]:
    """(H, W, C) of the raw images the runtime will get: ``images``', else the bundle's test or
    validation split's (recorded at build), else the largest member input (with a warning)."""
    if images is not None:
        return tuple(int(d) for d in images.shape[1:4])  # type: ignore[return-value]
    for split in ("test", "validation"):
        shape = ((manifest.get("data") or {}).get(split) or {}).get("image_shape")
        if shape:
            return tuple(int(d) for d in shape)  # type: ignore[return-value]
    pps = [Preprocessing.from_dict(m["preprocessing"]) for m in manifest["members"]]
    h, w = max((p.size for p in pps), key=lambda s: s[0] * s[1])
    c = 3 if any(p.channels == 3 for p in pps) else 1
    LOG.warning("the bundle does not record its images' size; profiling with %dx%dx%d images "
                "(pass --source to time preprocessing on real sizes)", h, w, c)
    return h, w, c


def make_images(shape: tuple[int, int, int], n: int, images: np.ndarray | None = None) -> np.ndarray:
    """``n`` raw uint8 images: the given ones (repeated if too few), else random of ``shape``."""
    if images is not None:
        reps = -(-n // len(images))
        return np.ascontiguousarray(np.concatenate([images] * reps)[:n])
    return np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8)


def _member_timings(backend: str, root: Path, entry: dict, batches: Sequence[int], images: np.ndarray,
                    threads: int | None, cfg: TimingConfig, tick: Callable[[], None], options: dict,
                    context: tuple) -> dict:
    """The member's stage as the runtime runs it, at each batch size: one-stage calls of the host
    loop on consecutive batches (wall time: ``stage``), and the member's inference inside them
    (the runner's own timing: ``batches``, with the device compute time where it has one)."""
    from edge_committee.runtime.cascade import HostLoop

    pp = Preprocessing.from_dict(entry["preprocessing"])
    gate_fn, confidence, labels = context
    out: dict = {"batches": {}, "stage": {}}
    with runner_for(backend, root / entry["file"], name=entry["name"], threads=threads, **options) as runner:
        loop = HostLoop([runner], [pp], [], confidence, labels, gate_fn)
        readings = {"member": partial(getattr, runner, "last_inference_ms"),
                    "compute": partial(getattr, runner, "last_compute_ms")}
        for b in batches:
            wall, read, stable = measure(partial(_call, loop, images[:b]), cfg, readings)
            out["stage"][str(b)] = Timing.from_samples(wall, stable).to_dict()
            member = np.asarray(read["member"] or wall)  # a runner that does not time itself: the stage
            out["batches"][str(b)] = Timing.from_samples(member, stable, read["compute"]).to_dict()
            tick()
    return out


def _facade_timings(backend: str, root: Path, manifest: dict, entry: dict, batches: Sequence[int],
                    images: np.ndarray, threads: int | None, cfg: TimingConfig, tick: Callable[[], None],
                    options: dict) -> dict:
    """The member's stage through a *cascade* backend (fused ONNX, CUDA graph, TensorRT): calls of the
    facade on a view of the bundle with that member alone. Such a backend does not time a member
    apart, so ``batches`` repeats ``stage``."""
    from edge_committee.profile.views import member_view
    from edge_committee.runtime import CascadeModel

    out: dict = {"batches": {}, "stage": {}}
    with member_view(root, manifest, [entry["name"]]) as view, \
            CascadeModel(view, backend=backend, threads=threads, verify=False, **options) as model:
        for b in batches:
            x = images[:b]
            model.predict(x)  # a first call may build or capture for this size: not a warm-up to time
            out["stage"][str(b)] = out["batches"][str(b)] = time_call(partial(model.predict, x), cfg).to_dict()
            tick()
    return out


def _gate_timer(gate_fn, b: int, classes: int, confidence: str) -> Callable[[], object]:
    logits = np.random.default_rng(1).normal(0, 4, (b, classes)).astype(np.float32)
    state = GateState.start(b, classes)
    everyone = np.arange(b, dtype=np.int32)

    def step():  # a middle stage: some samples exit, the rest are compacted
        state.active = everyone
        return gate_fn(state, logits, 0, 2, 0.5, confidence)

    return step


def _call(loop, images):
    """One facade call's work outside the stages (the input check, then the stage-less loop)."""
    from edge_committee.runtime.cascade import _as_batch

    return loop.run(_as_batch(images))


def _overhead_timings(manifest: dict, entries: Sequence[dict], batches: Sequence[int], images: np.ndarray,
                      gate: str, cfg: TimingConfig, tick: Callable[[], None]) -> dict:
    from edge_committee.runtime.cascade import HostLoop, _gate_step_fn

    gate_fn, _ = _gate_step_fn(gate)
    labels = list(manifest["labels"])
    confidence = (manifest.get("cascade") or {}).get("confidence", "max_prob")
    loop = HostLoop([], [], [], confidence, labels, gate_fn)
    out: dict = {"call": {}, "gather": {}, "gate": {}, "preprocess": {}}
    for b in batches:
        x, idx = images[:b], np.arange(b, dtype=np.int32)
        out["call"][str(b)] = time_call(partial(_call, loop, x), cfg).to_dict()
        out["gather"][str(b)] = time_call(partial(x.__getitem__, idx), cfg).to_dict()
        out["gate"][str(b)] = time_call(_gate_timer(gate_fn, b, len(labels), confidence), cfg).to_dict()
        tick()
    done: dict[Preprocessing, dict] = {}  # variants of one model share their preprocessing
    for m in entries:
        pp = Preprocessing.from_dict(m["preprocessing"])
        if pp not in done:
            done[pp] = {}
            for b in batches:
                x = images[:b]
                done[pp][str(b)] = time_call(partial(pp, x), cfg).to_dict()
                tick()
        out["preprocess"][m["name"]] = done[pp]
    return out


def _progress(total: int, enabled: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    """(tick, close) of a progress bar on stderr (silent when off or not a terminal)."""
    if not enabled:
        return (lambda: None), (lambda: None)
    from edge_committee._util import progress

    bar = progress(range(total), total=total, desc="profiling", unit="timing")
    it: Iterator = iter(bar)
    return (lambda: next(it, None)), getattr(bar, "close", lambda: None)


def profile_bundle(
    root: str | Path,
    backend: str = "onnxrt",
    batch_sizes: Sequence[int] = DEFAULT_BATCHES,
    threads: int | None = None,
    *,
    members: Sequence[str] | None = None,
    images: np.ndarray | None = None,
    timing: TimingConfig | None = None,
    gate: str = "auto",
    show_progress: bool = True,
    **options,
) -> dict:
    """Time every member variant of the bundle (or ``members``) and the runtime overhead.

    Args:
        root: the bundle folder.
        backend: a member backend (default ``onnxrt``).
        batch_sizes: batch sizes to time (default 1, 8, 64).
        threads: backend threads (default: the backend's choice).
        members: member names (default: every member variant in the manifest).
        images: raw uint8 (N, H, W, C) images to time preprocessing on (default: random images of
            the size the bundle records).
        timing: when each timing stops (:class:`~.timing.TimingConfig`; default :data:`DEFAULT_TIMING`).
        gate: ``auto`` or ``numpy``, as :class:`~edge_committee.runtime.CascadeModel`.
        show_progress: a progress bar on stderr.
        **options: passed to the member backend's factory.

    Returns the profile document (validated; see :mod:`.schema`); nothing is written.
    """
    root = Path(root)
    manifest = read_manifest(root)
    return profile_members(root, manifest, backend, batch_sizes, threads, members=members, images=images,
                           timing=timing, gate=gate, show_progress=show_progress, **options)


def profile_members(root: Path, manifest: dict, backend: str = "onnxrt",
                    batch_sizes: Sequence[int] = DEFAULT_BATCHES, threads: int | None = None, *,
                    members: Sequence[str] | None = None, images: np.ndarray | None = None,
                    timing: TimingConfig | None = None, gate: str = "auto", show_progress: bool = True,
                    **options) -> dict:
    """:func:`profile_bundle` on a manifest in the making (``members``, ``labels``, ``data``, and
    ``cascade.confidence`` if known): what a build with a latency budget runs before selecting."""
    from edge_committee.runtime.cascade import _gate_step_fn

    cascade_backend = _is_cascade_backend(backend)
    timing = timing or DEFAULT_TIMING
    batches = parse_batches(batch_sizes)
    entries = _member_entries(manifest, members)
    shape = source_shape(manifest, images)
    raw = make_images(shape, batches[-1], images)
    n_pp = len({Preprocessing.from_dict(m["preprocessing"]) for m in entries})
    tick, close = _progress(len(batches) * (len(entries) + 1 + n_pp), show_progress)
    start = time.perf_counter()
    # NumPy's BLAS on one thread for every timing, as CascadeModel.predict runs a call of this size
    # (see "BLAS threads" in the module docstring)
    with blas_single_thread():
        try:
            timed, overhead = _time_all(backend, root, manifest, entries, batches, raw, threads, timing, gate,
                                        tick, options, cascade_backend)
        finally:
            close()
    fp = fingerprint(backend, threads, _gate_step_fn(gate)[1])
    doc = {
        "schema": SCHEMA,
        "name": fp["key"],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - start, 2),
        "fingerprint": fp,
        "method": timing.to_dict(),
        "batch_sizes": batches,
        "source_shape": list(shape),
        "members": {m["name"]: {"file": m["file"], "sha256": m.get("sha256", ""), "precision": m["precision"],
                                **timed[m["name"]]} for m in entries},
        "overhead": overhead,
    }
    return check_profile(doc, "the new profile")


def _time_all(backend: str, root: Path, manifest: dict, entries: Sequence[dict], batches: Sequence[int],
              raw: np.ndarray, threads: int | None, timing: TimingConfig, gate: str, tick: Callable[[], None],
              options: dict, cascade_backend: bool) -> tuple[dict, dict]:
    """(member timings by name, overhead timings): every timing of a profile."""
    from edge_committee.runtime.cascade import _gate_step_fn

    if cascade_backend:
        timed = {m["name"]: _facade_timings(backend, root, manifest, m, batches, raw, threads, timing, tick,
                                            options) for m in entries}
    else:
        context = (_gate_step_fn(gate)[0], (manifest.get("cascade") or {}).get("confidence", "max_prob"),
                   list(manifest["labels"]))
        timed = {m["name"]: _member_timings(backend, root, m, batches, raw, threads, timing, tick, options,
                                            context) for m in entries}
    return timed, _overhead_timings(manifest, entries, batches, raw, gate, timing, tick)


def _is_cascade_backend(backend: str) -> bool:
    from edge_committee.backend import CASCADE_BACKENDS, MEMBER_BACKENDS, unknown_backend

    if backend not in MEMBER_BACKENDS and backend not in CASCADE_BACKENDS:
        raise unknown_backend(backend)
    return backend in CASCADE_BACKENDS


def _member_entries(manifest: dict, names: Sequence[str] | None) -> list[dict]:
    by_name = {m["name"]: m for m in manifest["members"]}
    if names is None:
        return list(by_name.values())
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise EdgeCommitteeError(f"no member {unknown[0]!r} in the bundle; it has {', '.join(by_name)}")
    return [by_name[n] for n in names]
