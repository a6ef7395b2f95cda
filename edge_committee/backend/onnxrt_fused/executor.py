"""Run a loaded bundle through its fused cascade file with ONNX Runtime (no Python between stages).

A fused file takes one source size (H, W, C). For each size a batch arrives in, the executor uses,
in this order: the file given as ``path`` (which must encode the bundle's cascade), a file the
bundle lists under ``fused_onnx`` for that size and form (``edge-committee export-onnx
--into-bundle``), or a fused model built in memory from the bundle's members (about a second, once
per size). A list of images of several sizes is run one size group at a time.

Memory is bounded: the sessions of at most ``max_sizes`` source sizes (default
:data:`MAX_SIZES`) are kept, the least recently used one is dropped when another size arrives
(a session is about 13 MB for the Fashion-MNIST example, so 8 sizes about 100 MB); and a batch
runs through the file in chunks of at most ``chunk`` images (default :data:`CHUNK`), so a large
batch does not hold every member's activations for every image at once.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from edge_committee._lazy import require
from edge_committee.errors import EdgeCommitteeError
from edge_committee.runtime.cascade import Executor, Prediction, run_by_shape

LOG = logging.getLogger("edge_committee")
#: source sizes whose sessions are kept (least recently used dropped first)
MAX_SIZES = 8
#: most images per run of the fused file
CHUNK = 256


class FusedOnnxExecutor(Executor):
    """The fused cascade file under ONNX Runtime, behind the :class:`Prediction` API.

    Args:
        model: the loaded :class:`~edge_committee.runtime.CascadeModel`.
        threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice).
        path: a fused file (from ``edge-committee export-onnx``) to use for its source size.
        form: ``compact`` (default) or ``mask``, for files found in the bundle or built in memory.
        providers: ONNX Runtime execution providers (default: CPU).
        max_sizes: sessions kept, one per source size, least recently used dropped (default 8).
        chunk: most images per run of the fused file (default 256).

    A learned committee's fused file embeds its stage combiners (and records their files'
    checksums, which :meth:`_mismatch` compares with the bundle's).
    """

    #: the fused file encodes a learned committee's gate (:mod:`edge_committee.export.cascade_onnx.learned_gate`)
    supports_learned_combiner = True

    def __init__(self, model: Any, threads: int | None = None, path: str | os.PathLike | None = None,
                 form: str = "compact", providers: list[str] | None = None, max_sizes: int = MAX_SIZES,
                 chunk: int = CHUNK) -> None:
        if int(max_sizes) < 1 or int(chunk) < 1:
            raise EdgeCommitteeError(f"onnxrt-fused: max_sizes ({max_sizes}) and chunk ({chunk}) must be >= 1")
        self.model = model
        self.max_sizes, self.chunk = int(max_sizes), int(chunk)
        self.threads = threads
        self.path = Path(path) if path is not None else None
        self.form = form
        self.providers = providers or ["CPUExecutionProvider"]
        self._sessions: OrderedDict[tuple[int, int, int], Any] = OrderedDict()
        #: source size -> where its fused model came from (a file path or "built in memory")
        self.origins: dict[tuple[int, int, int], str] = {}

    # ------------------------------------------------------------------ lifecycle
    def activate(self) -> None:
        if self.path is not None and not self._sessions:
            self._open_file(self.path, explicit=True)

    def deactivate(self) -> None:
        self._sessions.clear()
        self.origins.clear()

    def _options(self) -> Any:
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        return opts

    def _session(self, model_or_path: Any, what: str) -> Any:
        ort = require("onnxruntime")
        data = os.fspath(model_or_path) if isinstance(model_or_path, Path) else model_or_path.SerializeToString()
        try:
            return ort.InferenceSession(data, sess_options=self._options(), providers=self.providers)
        except Exception as exc:  # ORT raises its own exception types
            hint = ("; it holds the TensorRT CascadeGate plugin: export it with --gate standard for ONNX Runtime"
                    if "CascadeGate" in str(exc) else "")
            raise EdgeCommitteeError(f"ONNX Runtime cannot load {what}: {str(exc).splitlines()[0]}{hint}") from None

    # ------------------------------------------------------------------ which file
    def _mismatch(self, meta: dict) -> str | None:
        """Why a fused file's metadata does not encode this bundle's cascade, or None."""
        c = meta.get("cascade") or {}
        want = (list(self.model.members), [float(t) for t in self.model.thresholds], self.model.confidence)
        have = (c.get("members"), [float(t) for t in c.get("thresholds", [])], c.get("confidence"))
        if have != want:
            return f"it encodes {have[0]} at {have[1]} ({have[2]}), the bundle's cascade is {want[0]} at {want[1]}"
        from edge_committee.export.cascade_onnx.export import combiner_files

        want_comb = [e["sha256"] for e in combiner_files(self.model.manifest)]
        have_comb = [e.get("sha256") for e in meta.get("combiner") or []]
        if have_comb != want_comb:
            if have_comb and want_comb:
                return "its learned combiner differs from the bundle's (checksums)"
            return ("it averages, the bundle's committee has a learned combiner" if want_comb
                    else "it encodes a learned combiner, the bundle's committee averages")
        sums = {m["name"]: m.get("sha256") for m in meta.get("members", [])}
        for name in self.model.members:
            if sums.get(name) != self.model.by_name[name].get("sha256"):
                return f"member {name!r} differs from the bundle's file (checksum)"
        return None

    def _open_file(self, path: Path, explicit: bool) -> tuple[int, int, int] | None:
        from edge_committee.export.cascade_onnx import read_metadata

        sess = self._session(path, str(path))
        meta = read_metadata(sess.get_modelmeta().custom_metadata_map)
        why = self._mismatch(meta) if meta.get("cascade") else "it is not a fused cascade file (no metadata)"
        if why is not None:
            if explicit:
                raise EdgeCommitteeError(f"{path}: cannot run this bundle: {why}; export it again with "
                                         f"edge-committee export-onnx {self.model.root}")
            LOG.warning("%s: skipped (%s)", path, why)
            return None
        s = meta["source"]
        key = (int(s["height"]), int(s["width"]), int(s["channels"]))
        self._keep(key, sess, str(path))
        return key

    def _keep(self, key: tuple[int, int, int], sess: Any, origin: str) -> None:
        """Cache ``sess`` for ``key``, dropping the least recently used sizes past ``max_sizes``."""
        self._sessions[key], self.origins[key] = sess, origin
        self._sessions.move_to_end(key)
        while len(self._sessions) > self.max_sizes:
            old, _ = self._sessions.popitem(last=False)
            self.origins.pop(old, None)

    def _listed(self, key: tuple[int, int, int]) -> Path | None:
        for entry in self.model.manifest.get("fused_onnx", []):
            if (tuple(entry.get("source", ())) == key and entry.get("form") == self.form
                    and entry.get("gate") == "standard"):
                return self.model.root / entry["file"]
        return None

    def _build(self, key: tuple[int, int, int]) -> None:
        from edge_committee.export.cascade_onnx.build import CascadeDef
        from edge_committee.export.cascade_onnx.export import build_from_bundle

        m = self.model  # the bundle's committee, its learned combiner (loaded by the model) included
        cascade = CascadeDef(m.members, m.thresholds, m.confidence, m.manifest["cascade"].get("kind", "cascade"),
                             tuple(m.stage_combiners or ()))
        fused, _, _ = build_from_bundle(m.root, m.manifest, cascade=cascade, source_size=key[:2], channels=key[2],
                                        form=self.form)
        self._keep(key, self._session(fused, f"the fused cascade for {key[0]}x{key[1]}x{key[2]} images"),
                   "built in memory")

    def session_for(self, key: tuple[int, int, int]) -> Any:
        """The ORT session for raw images of shape ``key`` = (H, W, C)."""
        if key not in self._sessions:
            if self.path is not None:
                have = ", ".join("x".join(map(str, k)) for k in self._sessions)
                raise EdgeCommitteeError(
                    f"{self.path} takes {have} images; got {'x'.join(map(str, key))}: resize on the host, or "
                    f"export one for this size (edge-committee export-onnx --source-size {key[0]}x{key[1]}x{key[2]})")
            listed = self._listed(key)
            if listed is None or self._open_file(listed, explicit=False) != key:
                self._build(key)
        self._sessions.move_to_end(key)
        return self._sessions[key]

    # ------------------------------------------------------------------ running
    def _run_batch(self, images: np.ndarray) -> dict[str, np.ndarray]:
        sess = self.session_for(tuple(int(d) for d in images.shape[1:]))
        names = [o.name for o in sess.get_outputs()]
        parts = [sess.run(None, {"images": np.ascontiguousarray(images[i : i + self.chunk])})
                 for i in range(0, max(len(images), 1), self.chunk)]
        if len(parts) == 1:
            return dict(zip(names, parts[0]))
        return {n: np.concatenate([p[k] for p in parts]) for k, n in enumerate(names)}

    def run(self, images) -> Prediction:
        out = run_by_shape(images, len(self.model.labels), self._run_batch)
        return Prediction(out["labels"], out["probs"], out["confidence"], out["exit_stage"], out["flags"],
                          self.model.labels)


def fused_executor(model: Any, threads: int | None = None, **options: Any) -> FusedOnnxExecutor:
    """Factory registered as ``onnxrt-fused`` in :data:`edge_committee.backend.CASCADE_BACKENDS`."""
    return FusedOnnxExecutor(model, threads=threads, **options)
