"""Run a segmentation bundle's tile cascade: member 0 on whole frames, later members on tile windows.

The loop (:class:`TileHostLoop`) is the reference's loop (:func:`edge_committee.cascade.tiles.run_tile_cascade`)
over member runners: member 0 runs once on the batch of frames; its logits are resized to the frame
grid and every tile is scored by the gate (:func:`~edge_committee.cascade.tiles.tile_gate_step`);
each later member is preprocessed on the frames that still have active tiles only, and runs ONE
batched call on the windows (tile + margin) of those tiles. Members run through any member backend
(``onnxrt`` by default) with ``output_rank`` 4.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_committee.backend import runner_for
from edge_committee.bundle import read_manifest
from edge_committee.cascade.tiles import TileGrid, TileState, finish, resize_logits, tile_gate_step
from edge_committee.errors import BundleError, EdgeCommitteeError
from edge_committee.runtime.cascade import ExecutorLifecycle, RunnerLoop
from edge_committee.spec.preprocess import Preprocessing


@dataclasses.dataclass
class SegmentationPrediction:
    """What the tile cascade says about N frames (H x W pixels on the members' input grid, T tiles)."""

    labels: np.ndarray  #: (N, H, W) int32 class per pixel (-1 where no member gave finite logits)
    probs: np.ndarray  #: (N, C, H, W) float32 mean probabilities at each tile's exit stage
    tile_confidence: np.ndarray  #: (N, T) float32
    tile_exit_stage: np.ndarray  #: (N, T) int32, 0-based index into the cascade's members
    tile_flags: np.ndarray  #: (N, T) int32, 1 where some member gave the tile non-finite logits
    label_names: list[str]
    tiles_run: list[int] = dataclasses.field(default_factory=list)  #: tiles each later member ran on

    def histogram(self) -> np.ndarray:
        """(N, C) pixels of each class per frame."""
        c = len(self.label_names)
        return np.stack([np.bincount(x[x >= 0].ravel(), minlength=c) for x in self.labels])


def _frames(images) -> np.ndarray | list[np.ndarray]:
    """Raw uint8 frames as (N, H, W, C) (or a list of (H, W, C)), checked."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise EdgeCommitteeError(f"predict expects raw uint8 frames (0..255); got dtype {images.dtype}; pass "
                                     "the camera/file pixels, not a preprocessed tensor")
        if images.ndim == 2:
            images = images[None]
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise EdgeCommitteeError(f"predict expects frames of shape (N, H, W) or (N, H, W, 1|3); got {images.shape}")
        return images
    out = [np.asarray(im) for im in images]
    return [im[..., None] if im.ndim == 2 else im for im in out]


#: most class-map values (classes x pixels x frames) one call of the tile loop holds: 64 MiB of float32
CHUNK_VALUES = 1 << 24


def run_in_chunks(loop, images) -> SegmentationPrediction:
    """``loop.run`` (a :class:`TileHostLoop` or :class:`TorchTileLoop`) over the frames in chunks of at
    most :data:`CHUNK_VALUES` class-map values, so a long batch does not exhaust memory; one prediction."""
    frames = _frames(images)
    h, w = loop.preprocessing[0].size
    step = max(1, CHUNK_VALUES // (len(loop.labels) * h * w))
    if len(frames) <= step:
        return loop.run(frames)
    parts = [loop.run(frames[i:i + step]) for i in range(0, len(frames), step)]
    return SegmentationPrediction(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in
          ("labels", "probs", "tile_confidence", "tile_exit_stage", "tile_flags")),
        list(loop.labels), [sum(r) for r in zip(*(p.tiles_run for p in parts))])


class TileHostLoop(RunnerLoop):
    """The tile cascade over member runners (see the module docstring)."""

    def __init__(self, runners, preprocessing: Sequence[Preprocessing], grid: TileGrid, thresholds: Sequence[float],
                 confidence: str, labels: Sequence[str]) -> None:
        self.runners = list(runners)
        for r in self.runners:
            r.output_rank = 4
        self.preprocessing = list(preprocessing)
        self.grid = grid
        self.thresholds = list(thresholds)
        self.confidence = confidence
        self.labels = list(labels)
        self.frame = tuple(self.preprocessing[0].size)

    def run(self, images) -> SegmentationPrediction:
        frames = _frames(images)
        n, k_total, c = len(frames), len(self.runners), len(self.labels)
        per_frame = self.grid.count(self.frame)
        state = TileState.start(n * per_frame, c, self.grid.tile)
        if n == 0:  # nothing to run: empty outputs of the right shapes
            r = finish(state, self.grid, 0, self.frame)
            return SegmentationPrediction(r.labels, r.probs, r.tile_confidence.reshape(0, per_frame),
                                          r.tile_exit_stage.reshape(0, per_frame), r.tile_flags.reshape(0, per_frame),
                                          self.labels, [0] * (k_total - 1))
        x0 = self.preprocessing[0](frames)
        logits = resize_logits(self.runners[0].infer(x0), self.frame)
        t = self.thresholds[0] if k_total > 1 else float("inf")
        tile_gate_step(state, self.grid.split(logits), 0, k_total, t, self.confidence)
        tiles_run = []
        for k in range(1, k_total):
            if state.active.size == 0:
                tiles_run.append(0)
                continue
            tiles_run.append(int(state.active.size))
            if self.preprocessing[k] == self.preprocessing[0]:
                x, local = x0, state.active  # same input: cut the windows from member 0's
            else:  # preprocess only the frames that still have active tiles
                frame_ids = np.unique(state.active // per_frame)
                sub = frames[frame_ids] if isinstance(frames, np.ndarray) else [frames[i] for i in frame_ids]
                x = self.preprocessing[k](sub)
                local = np.searchsorted(frame_ids, state.active // per_frame) * per_frame + state.active % per_frame
            windows = self.grid.windows(x, local)
            out = resize_logits(self.runners[k].infer(windows), self.grid.window)
            t = self.thresholds[k] if k < k_total - 1 else float("inf")
            tile_gate_step(state, self.grid.centre(out), k, k_total, t, self.confidence)
        r = finish(state, self.grid, n, self.frame)
        return SegmentationPrediction(r.labels, r.probs, r.tile_confidence, r.tile_exit_stage, r.tile_flags,
                                      self.labels, tiles_run)


class TorchTileLoop:
    """The tile cascade on PyTorch members (ONNX converted by onnx2torch) on ``device`` (``cuda`` or ``cpu``):
    :func:`~edge_committee.cascade.tiles_torch.run_tile_cascade_torch`. Frames are preprocessed on the
    CPU once (every member must share one preprocessing) and moved to the device."""

    def __init__(self, paths: Sequence[Path], preprocessing: Sequence[Preprocessing], grid: TileGrid,
                 thresholds: Sequence[float], confidence: str, labels: Sequence[str], device: str = "cuda") -> None:
        if any(p != preprocessing[0] for p in preprocessing):
            raise EdgeCommitteeError("the torch-cuda segmentation loop needs one preprocessing shared by every member; "
                                     "use backend='onnxrt' for members that preprocess differently")
        self.paths, self.pp, self.grid = list(paths), preprocessing[0], grid
        self.preprocessing = list(preprocessing)
        self.thresholds, self.confidence, self.labels = list(thresholds), confidence, list(labels)
        self.device = device
        self.modules = None

    def activate(self) -> None:
        from edge_committee._lazy import require
        from edge_committee.backend.torch_cuda.loader import ModuleFromOnnx

        torch = require("torch")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise EdgeCommitteeError(f"device {self.device!r}: PyTorch sees no CUDA GPU here; use backend='onnxrt', or "
                                     "device='cpu' to run the torch path on the CPU")
        self.modules = [ModuleFromOnnx(p)().to(self.device) for p in self.paths]

    def deactivate(self) -> None:
        self.modules = None

    def run(self, images) -> SegmentationPrediction:
        from edge_committee._lazy import require
        from edge_committee.cascade.tiles_torch import run_tile_cascade_torch

        torch = require("torch")
        x = torch.from_numpy(self.pp(_frames(images))).to(self.device)
        r = run_tile_cascade_torch(x, self.modules, self.grid, self.thresholds, self.confidence)
        return SegmentationPrediction(r.labels.cpu().numpy().astype(np.int32), r.probs.cpu().numpy(),
                                      r.tile_confidence.cpu().numpy(), r.tile_exit_stage.cpu().numpy(),
                                      np.zeros(tuple(r.tile_exit_stage.shape), np.int32), self.labels, r.tiles_run)


class SegmentationModel(ExecutorLifecycle):
    """A loaded segmentation bundle (``task: segmentation``). Use as a context manager, or call :meth:`close`.

    Args:
        root: the bundle folder.
        backend: ``onnxrt`` (the default: the host loop over ONNX Runtime sessions), ``onnxrt-fused``
            (the ``export-onnx`` tile cascade file, listed in the bundle or built in memory per frame size)
            or ``torch-cuda`` (the members converted to PyTorch, the gate in torch; ``device="cpu"`` runs it
            on the CPU).
        threads: backend threads (ONNX Runtime intra-op).
        verify: check every checksum on load (default True).
        preprocess: ``exact`` or ``fast`` CPU preprocessing for every member (None, the default: each
            member's ``execution`` key).
    """

    def __init__(self, root: str | os.PathLike, backend: str = "onnxrt", threads: int | None = None,
                 verify: bool = True, **options) -> None:
        from edge_committee.backend import MEMBER_BACKENDS

        self.root = Path(root)
        self.manifest = read_manifest(self.root, verify=verify)
        if self.manifest.get("task") != "segmentation":
            raise BundleError(f"{self.root}: not a segmentation bundle (task {self.manifest.get('task', 'classification')!r}); "
                              "load it with edge_committee.load")
        c = self.manifest["cascade"]
        by_name = {m["name"]: m for m in self.manifest["members"]}
        self.members: list[str] = list(c["members"])
        self.thresholds = [float(t) for t in c["thresholds"]][: len(self.members) - 1]
        seg = self.manifest["segmentation"]
        self.grid = TileGrid(tuple(seg["tile"]), int(seg["margin"]))
        self.confidence: str = seg["confidence"]
        self.labels: list[str] = list(self.manifest["labels"])
        self.preprocessing = [Preprocessing.from_dict(by_name[n]["preprocessing"]) for n in self.members]
        preprocess = options.pop("preprocess", None)
        if preprocess not in (None, "exact", "fast"):
            raise EdgeCommitteeError(f"preprocess {preprocess!r} is not known; use 'exact' or 'fast'")
        if preprocess is not None:  # how the CPU resizes, for every member (as CascadeModel's option)
            self.preprocessing = [dataclasses.replace(p, execution=preprocess) for p in self.preprocessing]
        if backend == "torch-cuda":
            self.executor = TorchTileLoop([self.root / by_name[n]["file"] for n in self.members], self.preprocessing,
                                          self.grid, self.thresholds, self.confidence, self.labels,
                                          device=options.pop("device", "cuda"))
        elif backend == "onnxrt-fused":  # the export-onnx tile cascade file (listed in the bundle, or built)
            from edge_committee.backend.onnxrt_fused.tiles import FusedTileLoop

            self.executor = FusedTileLoop(self, threads=threads, **options)
        elif backend in MEMBER_BACKENDS:
            runners = [runner_for(backend, self.root / by_name[n]["file"], name=n, threads=threads, **options)
                       for n in self.members]
            self.executor = TileHostLoop(runners, self.preprocessing, self.grid, self.thresholds, self.confidence,
                                         self.labels)
        else:
            raise EdgeCommitteeError(f"backend {backend!r} cannot run a segmentation bundle yet; use "
                                     f"{', '.join(MEMBER_BACKENDS)}, onnxrt-fused or torch-cuda")
        self._active = False

    def predict(self, images) -> SegmentationPrediction:
        """Segment raw uint8 frames: an (N, H, W[, C]) array or a list of (H, W[, C]) arrays.

        Frames run in chunks of at most :data:`CHUNK_VALUES` class-map values (the gate holds a
        float32 running sum per class and pixel), so a long batch does not exhaust memory."""
        if not self._active:
            self.__enter__()
        return run_in_chunks(self.executor, images)


