"""A segmentation bundle through its fused tile-cascade file (``backend="onnxrt-fused"``).

The file (``export-onnx``, :mod:`edge_committee.export.cascade_onnx.tiles`) takes one source size
(H, W, C). For each size a batch arrives in, the loop uses a file the bundle lists under
``fused_onnx`` for that size (``export-onnx --into-bundle``) when it encodes the bundle's committee,
else builds one in memory from the bundle's members (once per size; at most :data:`MAX_SIZES` kept).
A list of frames of several sizes runs one size group at a time, in the caller's order.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import numpy as np

from edge_committee._lazy import require
from edge_committee.runtime.cascade import Executor

LOG = logging.getLogger("edge_committee")
MAX_SIZES = 4


class FusedTileLoop(Executor):
    """The fused tile cascade under ONNX Runtime, behind :class:`~edge_committee.runtime.tiles.SegmentationPrediction`.

    Args:
        model: the loaded :class:`~edge_committee.runtime.tiles.SegmentationModel`.
        threads: ONNX Runtime intra-op threads (default: its choice).
        providers: ONNX Runtime execution providers (default: CPU).
    """

    def __init__(self, model: Any, threads: int | None = None, providers: list[str] | None = None) -> None:
        self.model, self.threads = model, threads
        self.providers = providers or ["CPUExecutionProvider"]
        self.preprocessing, self.labels = model.preprocessing, model.labels  # what run_in_chunks reads
        self._sessions: OrderedDict[tuple[int, int, int], Any] = OrderedDict()
        self.origins: dict[tuple[int, int, int], str] = {}  #: source size -> the file, or "built in memory"

    def activate(self) -> None:
        pass  # sessions open per source size, on the first batch of that size

    def deactivate(self) -> None:
        self._sessions.clear()
        self.origins.clear()

    def _session(self, model_or_path: Any) -> Any:
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = int(self.threads), 1
        opts.log_severity_level = 3
        data = str(model_or_path) if not hasattr(model_or_path, "SerializeToString") else \
            model_or_path.SerializeToString()
        return ort.InferenceSession(data, sess_options=opts, providers=self.providers)

    def _encodes_ours(self, entry: dict) -> bool:
        c = entry.get("cascade") or {}
        return (list(c.get("members") or []) == list(self.model.members)
                and [float(t) for t in c.get("thresholds") or []] == [float(t) for t in self.model.thresholds])

    def session_for(self, key: tuple[int, int, int]) -> Any:
        if key not in self._sessions:
            listed = next((e for e in self.model.manifest.get("fused_onnx", [])
                           if tuple(e.get("source", ())) == key and self._encodes_ours(e)), None)
            if listed is not None:
                sess, origin = self._session(self.model.root / listed["file"]), str(self.model.root / listed["file"])
            else:
                from edge_committee.export.cascade_onnx.export import build_from_bundle

                fused, _, _ = build_from_bundle(self.model.root, self.model.manifest, source_size=key[:2],
                                                channels=key[2])
                sess, origin = self._session(fused), "built in memory"
            self._sessions[key], self.origins[key] = sess, origin
            while len(self._sessions) > MAX_SIZES:
                old, _ = self._sessions.popitem(last=False)
                self.origins.pop(old, None)
        self._sessions.move_to_end(key)
        return self._sessions[key]

    def _run(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        sess = self.session_for(tuple(int(d) for d in frames.shape[1:]))
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(None, {"images": np.ascontiguousarray(frames)})))

    def run(self, images):
        from edge_committee.runtime.tiles import SegmentationPrediction, _frames

        frames = _frames(images)
        if not isinstance(frames, np.ndarray):
            if not frames:  # no frame, no size: the file at the frame size answers the empty batch
                frames = np.zeros((0, *self.preprocessing[0].size, self.preprocessing[0].channels), np.uint8)
            elif len({f.shape for f in frames}) == 1:
                frames = np.stack(frames)
        if isinstance(frames, np.ndarray):
            groups = [(np.arange(len(frames)), frames)]
        else:  # frames of several sizes: one run per size
            by_shape: dict[tuple, list[int]] = {}
            for i, f in enumerate(frames):
                by_shape.setdefault(tuple(f.shape), []).append(i)
            groups = [(np.asarray(ix), np.stack([frames[i] for i in ix])) for ix in by_shape.values()]
        outs = [(ix, self._run(x)) for ix, x in groups]
        n = sum(len(ix) for ix, _ in outs)
        merged = {}
        for name, value in outs[0][1].items():
            full = np.empty((n, *value.shape[1:]), value.dtype)
            for ix, out in outs:
                full[ix] = out[name]
            merged[name] = full
        exits = merged["tile_exit_stage"]
        return SegmentationPrediction(merged["class_map"], merged["probs"], merged["tile_confidence"], exits,
                                      merged["tile_flags"], list(self.labels),
                                      [int((exits >= k).sum()) for k in range(1, len(self.model.members))])
