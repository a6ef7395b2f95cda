"""The Python API: ``edge_committee.build(...)`` and ``edge_committee.load(...)``."""

from __future__ import annotations

import os

from edge_committee.pipeline import build, reselect
from edge_committee.runtime import CascadeModel


def load(bundle: str | os.PathLike, backend: str = "onnxrt", threads: int | None = None,
         verify: bool = True, gate: str = "auto", **options) -> CascadeModel:
    """Load a bundle (checking its schema and checksums); ``.predict(images)`` runs the cascade.

    ``gate``: ``auto`` uses the C++ gate when the extension is built, else the NumPy reference;
    ``numpy`` forces the reference. ``**options`` go to the backend (e.g. ``precision="fp16"`` for
    ``torch-cuda``). A segmentation bundle (``task: segmentation``) loads as a
    :class:`~edge_committee.runtime.tiles.SegmentationModel` (``gate`` does not apply), a video
    bundle (``task: video``) as a :class:`~edge_committee.runtime.clips.VideoModel` (``predict`` takes clips).
    """
    from pathlib import Path

    from edge_committee.bundle.manifest import MANIFEST, parse_manifest

    task = parse_manifest(Path(bundle) / MANIFEST).get("task")
    if task == "segmentation":
        from edge_committee.runtime.tiles import SegmentationModel

        return SegmentationModel(bundle, backend=backend, threads=threads, verify=verify, **options)
    if task == "video":
        from edge_committee.runtime.clips import VideoModel

        return VideoModel(bundle, backend=backend, threads=threads, verify=verify, gate=gate, **options)
    return CascadeModel(bundle, backend=backend, threads=threads, verify=verify, gate=gate, **options)


__all__ = ["build", "load", "reselect"]
