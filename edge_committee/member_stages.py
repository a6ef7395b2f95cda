"""The member stages of a build: each spec member -> its checked ONNX file(s), cost and outputs.

For every member of a committee spec, in order: export (a PyTorch factory) or copy (an ONNX file)
its float32 model and check it; count its MACs; run it on the data splits (cached); leave it out
if its outputs are not finite; make its precision variants (FP16, INT8) and keep those within
tolerance. :mod:`edge_committee.pipeline` composes these with selection and the bundle.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge_committee.data.readers import RawSplit
from edge_committee.errors import SpecError
from edge_committee.evaluate import accuracy, member_outputs, sha256_file
from edge_committee.spec.committee import CommitteeSpec, MemberSpec

LOG = logging.getLogger("edge_committee")
SPLITS = ("validation", "test")


@dataclasses.dataclass
class MemberBuild:
    """One (member, precision) candidate as built: its file, cost and outputs."""

    name: str  #: ``phi0`` for FP32, ``phi0.int8`` for another precision
    base: str  #: the spec member's name
    precision: str
    path: Path
    macs: int
    spec: MemberSpec
    logits: dict[str, np.ndarray]  #: split -> (N, C) float32
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------ member stages
def onnx_from_spec(m: MemberSpec, dest: Path, spec: CommitteeSpec):
    """Write member ``m``'s float32 ONNX to ``dest``; return (export facts for the manifest, its checked
    input: a ``MemberInput``)."""
    from edge_committee.export import check_member_input

    if m.kind == "onnx":
        from edge_committee.export import copy_member, model_digest

        _check_onnx_file(m.onnx, m.name)
        inp = check_member_input(m.onnx, m.preprocessing, m.name)  # one clear line before any work
        copy_member(m.onnx, dest)  # with its external data files, if any
        return {"kind": "onnx", "source": str(m.onnx), "source_sha256": model_digest(m.onnx),
                **({"shares": m.shares} if m.shares else {})}, inp
    from edge_committee.export import export_onnx, load_torch_member

    model = load_torch_member(m.factory, dict(m.kwargs), m.weights, base_dir=spec.base_dir)
    shape = m.preprocessing.input_shape(1)[1:]
    rep = export_onnx(model, shape, dest, opset=spec.opset, parity_tolerance=spec.parity_tolerance)
    return {
        "kind": "torch",
        **({"shares": m.shares} if m.shares else {}),
        "factory": m.factory,
        "kwargs": dict(m.kwargs),
        "weights_sha256": sha256_file(m.weights),
        "opset": rep.opset,
        "parity_max_abs_diff": rep.max_abs_diff,
        "parity_tolerance": rep.tolerance,
    }, check_member_input(dest, m.preprocessing, m.name)


def _check_onnx_file(path: Path, name: str) -> None:
    from edge_committee._lazy import require

    onnx = require("onnx")
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise SpecError(f"member {name!r}: {path} is not a valid ONNX model ({exc})") from None


def _num_classes(path: Path) -> int | None:
    from edge_committee._lazy import require

    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    last = dims[-1] if dims else None
    return int(last.dim_value) if last is not None and last.dim_value > 0 else None


def _check_classes(path: Path, m: MemberSpec, labels: tuple[str, ...], logits: np.ndarray | None) -> None:
    c = _num_classes(path) if logits is None else logits.shape[1]
    if c is not None and c != len(labels):
        raise SpecError(
            f"member {m.name!r}: {path.name} outputs {c} classes but the committee has "
            f"{len(labels)} labels; all members must share one label set"
        )


def member_candidates(spec, m, splits, members_dir, cache, threads, mode, calib, say
                      ) -> tuple[list[MemberBuild], list[dict]]:
    """Member ``m``'s deployable candidates (FP32 and/or precision variants) and the rejected ones."""
    fp32, variants = build_member(spec, m, splits, members_dir, cache, threads, mode, calib, say)
    rejected: list[dict] = []
    if exclude_nonfinite(fp32, rejected, say):
        return [], rejected
    builds = []
    deployed = [v for v, keep in variants if keep]
    if mode == "fp32" or any(v.precision == "fp32" for v in deployed):
        builds.append(fp32)
    else:
        remove_member_file(fp32.path)  # the member deploys at another precision only
    for v, keep in variants:
        if v.precision == "fp32":
            continue
        if keep:
            builds.append(variant_build(spec, m, v, fp32, splits, cache, threads))
        else:
            rejected.append({"member": m.name, **v.to_dict(), "file": None})
            v.path.unlink(missing_ok=True)  # not deployed: keep it out of the bundle
    return builds, rejected


def build_member(spec, m, splits, members_dir, cache, threads, mode, calib, say):
    path = members_dir / f"{m.name}.fp32.onnx"
    export, inp = onnx_from_spec(m, path, spec)
    _check_classes(path, m, spec.labels, None)
    from edge_committee.cost import count_macs

    macs = int(count_macs(path, {inp.name: m.preprocessing.input_shape(1)}).total_macs)
    logits = member_logits(path, m, splits, cache, spec.batch_size, threads)
    _check_classes(path, m, spec.labels, logits["validation"])
    fp32 = MemberBuild(m.name, m.name, "fp32", path, macs, m, logits, {"export": export})
    accs = ", ".join(
        f"{k} {a:.4f}" for k in SPLITS if k in logits and (a := accuracy(logits[k], splits[k].labels)) is not None
    )
    say(f"member {m.name}: {macs / 1e6:.2f} M MACs, {accs or 'no labels'}")
    if mode == "fp32":
        return fp32, []
    variants, keep = precision_variants(spec, m, fp32, splits, members_dir, mode, calib, threads)
    for v in variants:
        say(f"  {m.name} {v.precision}: {v.reason}")
    return fp32, [(v, v in keep) for v in variants]


def exclude_nonfinite(fp32: MemberBuild, rejected: list, say) -> bool:
    """Leave out a member with NaN/Inf logits (reported with its counts); True if left out."""
    from edge_committee.evaluate import nonfinite_rows

    counts = {k: (nonfinite_rows(v), len(v)) for k, v in fp32.logits.items()}
    if not any(bad for bad, _ in counts.values()):
        return False
    reason = "excluded: non-finite (NaN/Inf) outputs on " + ", ".join(
        f"{bad} of {n} {k} samples" for k, (bad, n) in counts.items())
    say(f"member {fp32.name}: {reason}")
    rejected.append({"member": fp32.name, "precision": "fp32", "reason": reason, "file": None,
                     "nonfinite_rows": {k: bad for k, (bad, _) in counts.items()}})
    remove_member_file(fp32.path)
    return True


def remove_member_file(path: Path) -> None:
    """Remove a member's ONNX file and its external data file (``copy_member``'s ``<file>.data``), if any."""
    for p in (path, path.with_name(path.name + ".data")):
        p.unlink(missing_ok=True)


def variant_build(spec, m, v, fp32: MemberBuild, splits, cache, threads) -> MemberBuild:
    logits = {"validation": np.asarray(v.val_logits, np.float32)}
    if "test" in splits:
        logits["test"] = member_outputs(
            v.path, m.preprocessing, splits["test"], cache, spec.batch_size, threads=threads,
            desc=f"{m.name}.{v.precision} test", model_sha256=v.sha256,
        )
    extra = {"precision_check": v.to_dict(relative_to=v.path.parent.parent)}
    return MemberBuild(f"{m.name}.{v.precision}", m.name, v.precision, v.path, fp32.macs, m, logits, extra)


def member_logits(path, m, splits, cache, batch_size, threads) -> dict[str, np.ndarray]:
    from edge_committee.export import model_digest

    sha = model_digest(path)  # covers external data files too
    return {
        k: member_outputs(path, m.preprocessing, s, cache, batch_size, threads=threads,
                          desc=f"{m.name} {k}", model_sha256=sha)
        for k, s in splits.items()
    }


def precision_variants(spec, m, fp32: MemberBuild, splits, members_dir, mode, calib, threads):
    from edge_committee.precision import Int8Config, choose_variant, make_precision_variants

    opts = spec.precision_options
    int8 = Int8Config(method=opts.get("int8_method", "minmax"), percentile=float(opts.get("percentile", 99.999)),
                      exclude=opts.get("exclude"))
    variants = make_precision_variants(
        fp32.path,
        m.preprocessing,
        splits["validation"],
        calib=calib,
        precisions=mode,
        out_dir=members_dir,
        member_name=m.name,
        tolerance_pts=float(opts.get("tolerance", 1.0)),
        int8_config=int8,
        retry_int8_without_sensitive=bool(opts.get("retry_sensitive", True)),
        threads=threads,
        fp32_val_logits=fp32.logits["validation"],
        keep_io_types=bool(opts.get("keep_io_types", True)),
        batch_size=spec.batch_size,
    )
    keep = [v for v in variants if v.accepted] if mode == "auto" else [choose_variant(variants, mode)]
    return variants, keep


def calibration_sample(spec: CommitteeSpec, splits: dict[str, RawSplit]):
    """The calibration sample, read once and shared by every member (each preprocesses it)."""
    from edge_committee.calibration import CalibrationConfig, load_calibration

    if spec.calibration is not None:
        cfg = CalibrationConfig.from_dict(spec.calibration, spec.base_dir)
    else:
        which = next(k for k in ("calibration", "train", "validation") if k in spec.data)
        LOG.info("calibrating INT8 members on data.%s (512 samples, seed 0)", which)
        cfg = CalibrationConfig.from_dict({"source": {"kind": "split", **spec.data[which]}}, spec.base_dir)
    return load_calibration(cfg)


def member_entry(b: MemberBuild, labels, root: Path) -> dict:
    entry = {
        "name": b.name,
        "base": b.base,
        "file": b.path.relative_to(root).as_posix(),
        "sha256": "",
        "precision": b.precision,
        "macs": b.macs,
        "flops": 2 * b.macs,
        "preprocessing": b.spec.preprocessing.to_dict(),
        "input_shape": list(b.spec.preprocessing.input_shape(-1)),
        "labels": None,
        "accuracy": {k: accuracy(v, labels.get(k)) for k, v in b.logits.items()},
    }
    entry.update(b.extra)
    if "precision_check" in b.extra:
        entry["calibration"] = b.extra["precision_check"].get("calibration")
    return entry
