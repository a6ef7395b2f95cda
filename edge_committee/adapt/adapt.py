"""Self-training a bundle's member on the deployment's own footage (``edge-committee adapt``).

1. The committee (the bundle's chosen members, combined as the bundle combines them) labels the
   unlabeled footage; the labels are confidence-filtered and class-balanced (:mod:`.pseudo`).
2. The student member is fine-tuned from its current weights, noised, on the pseudo-labeled
   footage plus labeled training samples (:mod:`.student`), exported to ONNX (parity-checked
   against PyTorch) and evaluated on the validation and test splits.
3. It is accepted only if its validation accuracy does not drop (by more than ``tolerance``).
   Then, in one atomic edit of the bundle (:func:`~edge_committee.bundle.edit_bundle`), its ONNX
   file, weights and cached outputs are replaced and the committee is re-selected with the
   bundle's objective and budget. A rejected student, an error or Ctrl-C leaves the bundle as
   it was.

The student's PyTorch source is the committee spec the bundle was built from (recorded in the
manifest at build time, or given with ``spec=``); its data splits must be the bundle's (checked
by content hash). After a first adaptation the bundle holds the student's weights, and a second
one starts from them.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_committee.adapt.pseudo import read_unlabeled, select_pseudo_labels, teacher_probs
from edge_committee.adapt.student import NoiseConfig, finetune
from edge_committee.bundle import edit_bundle, load_outputs, read_manifest, save_outputs
from edge_committee.errors import EdgeCommitteeError
from edge_committee.spec.preprocess import Preprocessing


@dataclasses.dataclass
class AdaptResult:
    """What one adaptation did. Accuracies in [0, 1]; exit rates are fractions of the footage."""

    member: str
    accepted: bool
    val_accuracy_before: float
    val_accuracy_after: float
    test_accuracy_before: float | None
    test_accuracy_after: float | None
    footage: int  #: unlabeled samples read
    pseudo_labeled: int  #: samples the student learned from (after balancing, with repeats)
    confident: int  #: footage samples at or above the confidence threshold
    cascade_before: list[str]
    cascade_after: list[str]
    first_exit_before: float  #: footage share exiting at the first stage, the bundle's cascade before
    first_exit_after: float | None  #: the same with the re-selected cascade (None if rejected)
    member_confidence_before: float  #: the student's mean top probability on the footage
    member_confidence_after: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"
        verdict = "accepted" if self.accepted else "REJECTED (the bundle is unchanged)"
        return "\n".join([
            f"adapt {self.member}: {verdict}",
            (f"  validation accuracy {pct(self.val_accuracy_before)} -> {pct(self.val_accuracy_after)}; "
             f"test {pct(self.test_accuracy_before)} -> {pct(self.test_accuracy_after)}"),
            (f"  footage: {self.footage} images, {self.confident} confident, {self.pseudo_labeled} pseudo-labeled "
             "samples after class balancing"),
            (f"  {self.member}'s mean confidence on the footage {pct(self.member_confidence_before)} -> "
             f"{pct(self.member_confidence_after)}"),
            (f"  first-stage exits on the footage: {pct(self.first_exit_before)} ({' > '.join(self.cascade_before)})"
             f" -> {pct(self.first_exit_after)} ({' > '.join(self.cascade_after)})"),
        ])


# ---------------------------------------------------------------------------------- checks
def _student_entry(manifest: dict, member: str, root: Path) -> dict:
    by_name = {m["name"]: m for m in manifest["members"]}
    if member not in by_name:
        raise EdgeCommitteeError(f"{root}: no member {member!r}; members: {', '.join(by_name)}")
    entry = by_name[member]
    variants = [m["name"] for m in manifest["members"] if m.get("base", m["name"]) == entry.get("base", member)
                and m["name"] != member]
    if entry["precision"] != "fp32" or variants:
        raise EdgeCommitteeError(
            f"member {member!r} is deployed at {[entry['precision']] + variants}; adapt fine-tunes FP32 members "
            "only (re-quantizing an adapted member is not supported yet): build the bundle with --precision fp32")
    export = entry.get("export") or {}
    if export.get("kind") != "torch":
        raise EdgeCommitteeError(f"member {member!r} is an ONNX file; adapt fine-tunes PyTorch members (a spec "
                                 "entry with torch: factory + weights)")
    if manifest["cascade"].get("cost_unit") != "MACs":
        raise EdgeCommitteeError(f"{root} was selected on {manifest['cascade'].get('cost_unit')}; adapt re-selects "
                                 "on MACs: re-select on MACs first (edge-committee select DIR --budget-macs ...)")
    return entry


def _spec_and_splits(manifest: dict, spec_path, root: Path):
    from edge_committee.data.readers import read_split
    from edge_committee.pipeline import read_splits
    from edge_committee.spec.committee import load_spec

    recorded = (manifest.get("spec") or {}).get("path")
    path = spec_path or recorded
    if not path or not Path(path).is_file():
        raise EdgeCommitteeError(f"adapt needs the committee spec {root} was built from (for the student's "
                                 f"PyTorch factory and the data splits){'; ' + recorded + ' is gone' if recorded else ''}"
                                 ": pass --spec FILE")
    spec = load_spec(path)
    splits = read_splits(spec)
    for name, s in splits.items():
        want = (manifest.get("data") or {}).get(name, {}).get("sha256")
        if want and s.content_hash() != want:
            raise EdgeCommitteeError(f"{path}: data.{name} is not the split {root} was built on (content hash "
                                     "differs); pass the spec the bundle was built from")
    if "train" not in spec.data:
        raise EdgeCommitteeError(f"{path}: adapt needs labeled training data beside the footage: add data.train")
    train = read_split(spec.data["train"], spec.base_dir, spec.labels, "data.train")
    if train.labels is None:
        raise EdgeCommitteeError(f"{path}: data.train has no labels; the student needs labeled samples too")
    return spec, splits, train


def _load_student(spec, entry: dict, root: Path):
    from edge_committee.evaluate import sha256_file
    from edge_committee.export import load_torch_member

    m = spec.member(entry.get("base", entry["name"]))
    adapted = (entry.get("adaptation") or {}).get("weights")
    weights = root / adapted if adapted else m.weights
    if not adapted and sha256_file(m.weights) != entry["export"].get("weights_sha256"):
        raise EdgeCommitteeError(f"{m.weights}: not the weights member {entry['name']!r} was built from "
                                 "(sha256 differs); pass the spec the bundle was built from")
    return load_torch_member(m.factory, dict(m.kwargs), weights, base_dir=spec.base_dir), m


# ---------------------------------------------------------------------------------- running
def _logits(path: Path, pp: Preprocessing, images, threads, batch: int, desc: str) -> np.ndarray:
    from edge_committee.evaluate.evaluate import run_member

    return run_member(path, pp, images, batch, threads=threads, desc=desc)


def _committee_gate(root: Path, manifest: dict):
    """(final-stage combiner or None, stage combiners or None) of a bundle's committee."""
    from edge_committee.cascade.learned_onnx import bundle_stage_combiners

    stages = bundle_stage_combiners(root, manifest)
    return (stages[-1], stages) if stages else (None, None)


def _first_exit(cascade: dict, logits: dict[str, np.ndarray], stages) -> float:
    """Share of samples the cascade stops at its first stage (``stages``: its learned combiners, or None)."""
    from edge_committee.cascade import learned, reference

    members = cascade["members"]
    if len(members) == 1:
        return 1.0
    xs = [logits[n] for n in members]
    res = (learned.run_learned_cascade(xs, cascade["thresholds"], stages, cascade["confidence"]) if stages
           else reference.run_cascade(xs, cascade["thresholds"], cascade["confidence"]))
    return float(np.mean(res.exit_stage == 0))


def adapt(
    bundle: str | os.PathLike,
    unlabeled: str | os.PathLike,
    member: str,
    *,
    spec: str | os.PathLike | None = None,
    max_frames: int = 20_000,
    min_confidence: float = 0.6,
    per_class: int | None = None,
    noise: NoiseConfig | None = None,
    tolerance: float = 0.0,
    threads: int | None = None,
    keep_student: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> AdaptResult:
    """Self-train ``member`` of ``bundle`` on the footage ``unlabeled``; see the module docstring.

    Args:
        bundle: the bundle folder (changed in place, atomically, only if the student is accepted).
        unlabeled: the footage: a folder of images, an ``.npy``/``.npz`` of uint8 images, a video
            file or a stream URI (:func:`.pseudo.read_unlabeled`).
        member: the student, an FP32 PyTorch member of the bundle (e.g. the first stage).
        spec: the committee spec the bundle was built from (default: the one its manifest records).
        max_frames: most frames read from a video or stream (default 20,000).
        min_confidence: the teacher's top probability a footage image needs (default 0.6).
        per_class: pseudo-labeled samples per class after balancing (default: the median count).
        noise: the student's noise and optimisation settings (default: :class:`.student.NoiseConfig`).
        tolerance: accuracy points (0..1 scale) the validation accuracy may drop (default 0).
        threads: ONNX Runtime and PyTorch threads (default: their choice).
        keep_student: also write the student's ONNX file here, accepted or not (to inspect it).
        log: called with one line per step.
        force: ``keep_student`` may replace an existing file (never a device node, link or folder).
    """
    from edge_committee._lazy import require

    torch = require("torch")
    noise = noise or NoiseConfig()
    if threads:
        torch.set_num_threads(threads)
    root = Path(bundle)
    if keep_student:  # before the training: a wrong path fails at once (never a device, link or user's file)
        from edge_committee._util import check_output_file

        check_output_file(keep_student, force=force, flag="--keep-student")
    manifest = read_manifest(root)
    entry = _student_entry(manifest, member, root)
    spec_obj, splits, train = _spec_and_splits(manifest, spec, root)
    pp = Preprocessing.from_dict(entry["preprocessing"])
    if pp.layout != "NCHW":
        raise EdgeCommitteeError(f"member {member!r} takes {pp.layout} input; adapt's input noise supports NCHW")
    footage = read_unlabeled(unlabeled, max_frames)
    if len(footage) == 0:
        raise EdgeCommitteeError(f"--unlabeled {unlabeled}: holds no images (0 frames); give footage with at least "
                                 "one image")
    log(f"footage: {len(footage)} images from {unlabeled}")
    cascade = manifest["cascade"]
    by_name = {m["name"]: m for m in manifest["members"]}
    old = {n: _logits(root / by_name[n]["file"], Preprocessing.from_dict(by_name[n]["preprocessing"]), footage,
                      threads, spec_obj.batch_size, f"teacher {n}")
           for n in dict.fromkeys(cascade["members"] + [member])}
    final, stages = _committee_gate(root, manifest)
    labels = select_pseudo_labels(teacher_probs([old[n] for n in cascade["members"]], final),
                                  min_confidence, per_class, noise.seed)
    log(f"pseudo-labels: {labels.confident} of {len(footage)} confident at {min_confidence:g}; "
        f"{len(labels.index)} after balancing (per class {labels.per_class.tolist()})")
    model, _ = _load_student(spec_obj, entry, root)
    inputs = pp(footage[labels.index] if isinstance(footage, np.ndarray) else [footage[i] for i in labels.index])
    finetune(model, inputs, labels.targets, pp(train.images), train.labels, noise, log)
    return _finish(root, manifest, entry, model, pp, spec_obj, splits, footage, old, labels, tolerance, threads,
                   log, cascade, keep_student, stages)


def _finish(root, manifest, entry, model, pp, spec, splits, footage, old, labels, tolerance, threads, log,
            cascade, keep_student=None, stages=None) -> AdaptResult:
    from edge_committee.evaluate import accuracy
    from edge_committee.export import export_onnx

    name = entry["name"]
    with tempfile.TemporaryDirectory(prefix="ec-adapt-") as tmp:
        path = Path(tmp) / "student.onnx"
        rep = export_onnx(model, pp.input_shape(1)[1:], path, opset=int(entry["export"].get("opset", 17)),
                          parity_tolerance=spec.parity_tolerance)
        if keep_student:
            from edge_committee._util import write_bytes_atomic

            write_bytes_atomic(keep_student, path.read_bytes())
        new = {k: _logits(path, pp, s, threads, spec.batch_size, f"student {k}") for k, s in splits.items()}
        new_footage = _logits(path, pp, footage, threads, spec.batch_size, "student footage")
        arrays = load_outputs(root)
        acc = {k: (accuracy(arrays[f"{name}/{k}"], splits[k].labels), accuracy(v, splits[k].labels))
               for k, v in new.items()}
        before, after = acc["validation"]
        if before is None:
            raise EdgeCommitteeError("adapt accepts a student by its validation accuracy; the validation split "
                                     "has no labels")
        accepted = after >= before - tolerance
        result = AdaptResult(
            name, accepted, before, after, *(acc.get("test") or (None, None)), len(footage), len(labels.index),
            labels.confident, list(cascade["members"]), list(cascade["members"]),
            _first_exit(cascade, old, stages), None, float(_softmax_max(old[name]).mean()),
            float(_softmax_max(new_footage).mean()))
        if not accepted:
            log(result.summary())
            return result
        new_manifest = _commit(root, entry, model, path, new, arrays, result, rep)
    logits_after = {**old, name: new_footage}
    c = new_manifest["cascade"]
    by_name = {m["name"]: m for m in new_manifest["members"]}
    for n in c["members"]:
        if n not in logits_after:
            logits_after[n] = _logits(root / by_name[n]["file"], Preprocessing.from_dict(by_name[n]["preprocessing"]),
                                      footage, threads, spec.batch_size, f"footage {n}")
    result.cascade_after = list(c["members"])
    result.first_exit_after = _first_exit(c, logits_after, _committee_gate(root, new_manifest)[1])
    log(result.summary())
    return result


def _softmax_max(logits: np.ndarray) -> np.ndarray:
    from edge_committee.cascade.reference import softmax

    return softmax(logits).max(axis=1)


def _drop_stale_artifacts(ed, name: str) -> None:
    """Remove what embeds the old member: every fused cascade file and whole-cascade engine, and the
    member's own TensorRT engines (each is built from the member's former ONNX file)."""
    from edge_committee.backend.tensorrt.engines import SECTION as TRT
    from edge_committee.export.cascade_onnx.export import MANIFEST_KEY as FUSED

    for entry in ed.manifest.get(FUSED, []):
        ed.remove(entry["file"])
    if FUSED in ed.manifest:
        ed.manifest[FUSED] = []
    section = ed.manifest.get(TRT) or {}
    stale = [e for e in section.get("engines", []) if e.get("kind") == "cascade" or e.get("member") == name]
    for entry in stale:
        ed.remove(entry["file"])
    if stale:
        section["engines"] = [e for e in section["engines"] if e not in stale]


def _commit(root: Path, entry: dict, model, onnx_path: Path, new: dict, arrays: dict, result: AdaptResult,
            rep) -> dict:
    """Swap the accepted student into the bundle and re-select, in one atomic edit."""
    from safetensors.torch import save_file

    from edge_committee._util import atomic_path, write_bytes_atomic
    from edge_committee.pipeline import _reselect_into

    name = entry["name"]
    with edit_bundle(root) as ed:
        write_bytes_atomic(ed.path / entry["file"], onnx_path.read_bytes())  # a new inode: the original stays
        weights_rel = f"members/{name}.adapted.safetensors"
        with atomic_path(ed.add(weights_rel)) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
        arrays = {**arrays, **{f"{name}/{k}": v for k, v in new.items()}}
        save_outputs(ed.path / "outputs.npz", arrays)
        m = next(x for x in ed.manifest["members"] if x["name"] == name)
        m["accuracy"] = {k: v for k, v in {"validation": result.val_accuracy_after,
                                            "test": result.test_accuracy_after}.items() if v is not None}
        runs = (m.get("adaptation") or {}).get("runs", [])
        m["adaptation"] = {"weights": weights_rel, "runs": runs + [{
            **{k: v for k, v in result.to_dict().items() if k not in ("cascade_after", "first_exit_after")},
            "parity_max_abs_diff": rep.max_abs_diff}]}
        c = ed.manifest["cascade"]
        _reselect_into(ed.path, ed.manifest, c["objective"], c["budget"], None, None, None, None, None, None)
        _drop_stale_artifacts(ed, name)
        manifest = ed.manifest
    return manifest
