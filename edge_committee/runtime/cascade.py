"""Run a bundle's cascade: each member through its backend, the gate between members.

Stage ``k`` runs member ``k`` only on the samples still active (compaction), then the gate
(:mod:`edge_committee.gate` when its compiled extension is present, else the NumPy reference
:func:`edge_committee.cascade.reference.gate_step`, which defines the semantics) decides who exits.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Self, Sequence

import numpy as np

from edge_committee._util import blas_single_thread
from edge_committee.backend import runner_for
from edge_committee.bundle import read_manifest
from edge_committee.cascade.reference import GateState, gate_step
from edge_committee.errors import BundleError, EdgeCommitteeError
from edge_committee.preprocess.shared import SharedPreprocessing
from edge_committee.spec.preprocess import Preprocessing


@dataclasses.dataclass
class Prediction:
    """What the cascade says about each of N samples."""

    labels: np.ndarray  #: (N,) int32 class index (-1 if no member gave finite logits)
    probs: np.ndarray  #: (N, C) float32 mean probabilities at the exit stage (over the members with finite logits)
    confidence: np.ndarray  #: (N,) float32
    exit_stage: np.ndarray  #: (N,) int32, 0-based index into :attr:`CascadeModel.members`
    flags: np.ndarray  #: (N,) int32, 1 where some member gave non-finite logits (left out of the mean)
    label_names: list[str]

    def names(self) -> list[str]:
        return [self.label_names[i] if i >= 0 else "<invalid>" for i in self.labels]


def _gate_step_fn(kind: str):
    """(gate step function, backend name): the C++ gate when built, else the NumPy reference."""
    if kind == "numpy":
        return gate_step, "numpy"
    from edge_committee import gate

    return gate.gate_step_cpu, gate.backend


class Executor:
    """What runs a loaded cascade: the host loop below, or a cascade backend (fused ONNX, CUDA graph).

    ``activate``/``deactivate`` load and free resources; ``run`` takes a checked batch of raw
    uint8 images (an (N, H, W, C) array or a list of (H, W, C) arrays) and returns a
    :class:`Prediction`.
    """

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    def run(self, images) -> Prediction:
        raise NotImplementedError


class RunnerLoop(Executor):
    """An executor whose members are ``self.runners`` (each activated and freed with it)."""

    runners: list

    def activate(self) -> None:
        for r in self.runners:
            r.activate()

    def deactivate(self) -> None:
        for r in self.runners:
            r.deactivate()


class HostLoop(RunnerLoop):
    """The cascade loop, written once, over any member runners and any gate step.

    Stage ``k`` preprocesses and runs member ``k`` on the active samples only, then the gate
    step updates the state and compacts the survivors. Preprocessing is shared across stages
    (:class:`~edge_committee.preprocess.shared.SharedPreprocessing`): members of equal resize
    geometry resize once, and a later stage resizes only survivors not resized before. A gate step object with a ``start(N, C)``
    method makes its own state (the learned combiner's keeps member log-probabilities,
    :class:`~edge_committee.cascade.learned.LearnedGate`); otherwise the state is a ``GateState``.
    """

    #: the gate step decides; a learned combiner's gate runs here like any other
    supports_learned_combiner = True

    def __init__(self, runners, preprocessing: list[Preprocessing], thresholds: list[float],
                 confidence: str, labels: list[str], gate_step_fn, preprocess: str | None = None) -> None:
        self.runners = runners
        self.preprocess = preprocess  #: exact/fast for every member; None: each member's execution key
        self.preprocessing = preprocessing
        self.thresholds = thresholds
        self.confidence = confidence
        self.labels = labels
        self.gate_step = gate_step_fn

    def run(self, images) -> Prediction:
        n, k_total = len(images), len(self.runners)
        state = getattr(self.gate_step, "start", GateState.start)(n, len(self.labels))
        inputs = SharedPreprocessing(images, self.preprocess)  # decode once, resize once per geometry
        for k, (runner, pp) in enumerate(zip(self.runners, self.preprocessing)):
            if state.active.size == 0:
                break
            logits = runner.infer(inputs(pp, state.active))
            t = self.thresholds[k] if k < k_total - 1 else float("inf")
            self.gate_step(state, logits, k, k_total, t, self.confidence)
        return Prediction(state.label, state.mean_probs(), state.conf, state.exit_stage, state.flag, self.labels)


class ExecutorLifecycle:
    """A loaded model's lifecycle: ``with`` (or the first ``predict``) activates ``self.executor``,
    :meth:`close` (or leaving the ``with``) frees it. Subclasses set ``executor`` and ``_active``."""

    executor: Executor
    _active: bool = False

    def __enter__(self) -> Self:
        if not self._active:
            self.executor.activate()
            self._active = True
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._active:
            self.executor.deactivate()
        self._active = False


class CascadeModel(ExecutorLifecycle):
    """A loaded bundle. Use as a context manager, or call :meth:`close` when done.

    Args:
        root: the bundle folder.
        backend: a member backend (``onnxrt``, the default) run by the host loop, or a cascade
            backend; see :mod:`edge_committee.backend`.
        threads: backend threads (ONNX Runtime intra-op).
        verify: check every checksum on load (default True).
        gate: ``auto`` (the C++ gate when the extension is built, else NumPy) or ``numpy``;
            used by the host loop.
        preprocess: ``exact`` or ``fast`` CPU preprocessing for every member (see
            :mod:`edge_committee.preprocess.cpu`); None (default): each member's ``execution`` key.
            Used by the host loop.
        **options: passed to the backend's factory.
    """

    def __init__(self, root: str | os.PathLike, backend: str = "onnxrt", threads: int | None = None,
                 verify: bool = True, gate: str = "auto", preprocess: str | None = None, **options) -> None:
        from edge_committee.backend import CASCADE_BACKENDS, MEMBER_BACKENDS, cascade_executor_for, unknown_backend

        self.root = Path(root)
        self.manifest = read_manifest(self.root, verify=verify)
        if self.manifest.get("task", "classification") != "classification":
            raise BundleError(f"{self.root}: a {self.manifest['task']} bundle; load it with edge_committee.load(...) "
                              "(or edge_committee.runtime.tiles.SegmentationModel, edge_committee.runtime.clips.VideoModel)")
        c = self.manifest["cascade"]
        self.by_name = {m["name"]: m for m in self.manifest["members"]}
        missing = [n for n in c.get("members", []) if n not in self.by_name]
        if not c.get("members") or missing:
            raise BundleError(f"{self.root / 'manifest.json'}: the cascade names unknown members {missing}")
        self.members: list[str] = list(c["members"])
        self.thresholds: list[float] = [float(t) for t in c["thresholds"]][: len(self.members) - 1]
        self.confidence: str = c["confidence"]
        self.labels: list[str] = list(self.manifest["labels"])
        self.preprocessing = [Preprocessing.from_dict(self.by_name[n]["preprocessing"]) for n in self.members]
        if preprocess not in (None, "exact", "fast"):
            raise EdgeCommitteeError(f"preprocess {preprocess!r} is not known; use 'exact' or 'fast'")
        self.backend = backend
        if gate not in ("auto", "numpy"):
            raise EdgeCommitteeError(f"gate {gate!r} is not known; use 'auto' or 'numpy'")
        self._gate, self.gate_backend = _gate_step_fn(gate)
        self.combiner = c.get("combiner")
        #: a learned committee's stage combiners (stage k over members 0..k), None for the average
        self.stage_combiners = None
        if self.combiner:
            self._gate, self.gate_backend = self._learned_gate(), "learned combiner (numpy)"
            self.stage_combiners = list(self._gate.combiners)
        if backend in MEMBER_BACKENDS:
            runners = [runner_for(backend, self.member_path(n), name=n, threads=threads, **options)
                       for n in self.members]
            self.executor: Executor = HostLoop(runners, self.preprocessing, self.thresholds, self.confidence,
                                               self.labels, self._gate, preprocess)
        elif backend in CASCADE_BACKENDS:
            if preprocess is not None:
                raise EdgeCommitteeError(
                    f"preprocess={preprocess!r} chooses how the CPU host loop preprocesses; backend {backend!r} "
                    "runs its own preprocessing (see docs/preprocessing_benchmark.md): drop the option, or use "
                    f"one of {', '.join(MEMBER_BACKENDS)}")
            self.executor = cascade_executor_for(backend, self, threads=threads, **options)
        else:
            raise unknown_backend(backend)
        if self.combiner and not getattr(self.executor, "supports_learned_combiner", False):
            raise EdgeCommitteeError(
                f"backend {backend!r} cannot run this bundle's learned combiner yet; use --backend onnxrt "
                "(or re-select with --combiner average)")
        self._active = False

    def _learned_gate(self):
        """The learned committee's gate: stage combiners read from the bundle's ONNX files."""
        from edge_committee.cascade.learned import LearnedGate
        from edge_committee.cascade.learned_onnx import bundle_stage_combiners

        return LearnedGate(bundle_stage_combiners(self.root, self.manifest))

    def member_path(self, name: str) -> Path:
        """The file of member ``name`` inside the bundle."""
        return self.root / self.by_name[name]["file"]

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> Prediction:
        """Classify raw uint8 images: an (N, H, W[, C]) array or a list of (H, W[, C]) arrays.

        A device backend (``torch-cuda``) also takes a uint8 CUDA tensor and returns CUDA tensors.
        """
        if not self._active:
            self.__enter__()
        if hasattr(images, "__cuda_array_interface__"):  # a CUDA tensor: only a device executor takes it
            if not getattr(self.executor, "accepts_device_arrays", False):
                raise EdgeCommitteeError(f"backend {self.backend!r} takes uint8 images in host memory; pass "
                                         "images.cpu().numpy(), or load the bundle with backend='torch-cuda'")
            return self.executor.run(images)
        batch = _as_batch(images)
        if _pixels(batch) < _BLAS_THREADED_PIXELS:
            return self.executor.run(batch)
        with blas_single_thread():  # see _BLAS_THREADED_PIXELS
            return self.executor.run(batch)


#: From about this many raw pixels per call, the NumPy products left on the host (torch-style colour
#: mixes, the reference resize where the extension is not built, a learned combiner) are large enough
#: for OpenBLAS to wake its threads, which then spin and take the cores the member backend needs
#: (phi4 at batch 64 ran 2x slower right after phi0's preprocessing, when every resize was such a
#: product). Below it, BLAS stays on one thread by itself and limiting it would only cost
#: threadpoolctl's ~25 us.
_BLAS_THREADED_PIXELS = 1 << 14


def _pixels(batch) -> int:
    if isinstance(batch, np.ndarray):
        return int(batch.size)
    return sum(int(im.size) for im in batch)


def empty_outputs(n: int, num_classes: int) -> dict[str, np.ndarray]:
    """Outputs for ``n`` samples as the host loop's state starts them (label -1, confidence NaN, probs 0)."""
    s = GateState.start(n, num_classes)
    return {"labels": s.label, "probs": s.prob_sum, "confidence": s.conf, "exit_stage": s.exit_stage, "flags": s.flag}


def run_by_shape(images, num_classes: int, run_batch, chunk: int | None = None) -> dict[str, np.ndarray]:
    """Outputs of an executor that takes one image size per call, for any checked batch.

    ``run_batch`` maps stacked uint8 ``(n, H, W, C)`` images to a dict of ``labels, probs,
    confidence, exit_stage, flags``. A list of images is grouped by size, each group run in
    chunks of at most ``chunk`` (None: whole), and the parts put back in input order into
    outputs that start as the host loop's state does (label -1, confidence NaN, probs 0). An
    array with no chunking is run as it is.
    """
    if isinstance(images, np.ndarray):
        if chunk is None:
            return run_batch(images)
        groups = [(np.arange(len(images)), images)]
    else:
        by_shape: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            by_shape.setdefault(tuple(im.shape), []).append(i)
        groups = [(np.asarray(ix), np.stack([images[i] for i in ix])) for ix in by_shape.values()]
    out = empty_outputs(sum(len(idx) for idx, _ in groups), num_classes)
    for idx, batch in groups:
        step = chunk or len(batch)
        for start in range(0, len(batch), step):
            part = run_batch(batch[start:start + step])
            for key, value in part.items():
                out[key][idx[start:start + step]] = value
    return out


def _as_batch(images) -> np.ndarray | list[np.ndarray]:
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise EdgeCommitteeError(
                f"predict expects raw uint8 images (0..255); got dtype {images.dtype}. "
                "Pass the camera/file pixels, not a preprocessed tensor: each member preprocesses itself"
            )
        if images.ndim == 2:  # one grayscale image
            images = images[None]
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise EdgeCommitteeError(
                f"predict expects images of shape (N, H, W) or (N, H, W, 1|3); got {images.shape}"
            )
        if images.shape[0] and 0 in images.shape[1:3]:
            raise EdgeCommitteeError(f"predict got empty images of shape {images.shape}: height and width must be > 0")
        return images
    out = []
    for i, im in enumerate(images):
        im = np.asarray(im)
        if im.dtype != np.uint8 or im.ndim not in (2, 3) or (im.ndim == 3 and im.shape[-1] not in (1, 3)):
            raise EdgeCommitteeError(
                f"image {i}: expected uint8 (H, W), (H, W, 1) or (H, W, 3); got {im.dtype} {im.shape}"
            )
        if 0 in im.shape[:2]:
            raise EdgeCommitteeError(f"image {i}: empty image of shape {im.shape}; height and width must be > 0")
        out.append(im[..., None] if im.ndim == 2 else im)
    return out
