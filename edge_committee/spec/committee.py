"""The committee spec (YAML): members, their preprocessing, the data splits and the budget.

.. code-block:: yaml

    name: my-committee
    labels: [cat, dog]            # or labels_file: labels.txt (one per line)
    members:
      - name: small
        onnx: small.onnx          # an ONNX file ...
        preprocessing: {size: [224, 224], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
      - name: large
        torch:                    # ... or a PyTorch factory plus weights (never unpickled)
          factory: models.py:build_large      # or a module path "pkg.models:build_large"
          kwargs: {width: 2}
          weights: large.safetensors          # or .pt/.pth loaded with weights_only=True
        preprocessing: {size: [260, 260], scale: 0.0078125, offset: -0.9921875}
        labels: [cat, dog]        # optional: must equal the committee's labels
    data:
      validation: {format: folder, path: val/}       # chooses the cascade
      test: {format: npz, path: test.npz}            # only for reporting
    budget: {macs: 4.0e8, kind: worst}   # or {latency_ms: 12, kind: mean, batch: 1}; macs: largest
    selection: {confidence: max_prob, max_members: 4}
    evaluation: {batch_size: 256, threads: 2}
    export: {opset: 17, parity_tolerance: 1.0e-4}

Relative paths are resolved against the spec file's folder. Every error names the key, the
value and what is allowed (:class:`~edge_committee.errors.SpecError`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Mapping

from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS
from edge_committee.data.readers import FORMATS
from edge_committee.errors import SpecError
from edge_committee.spec.preprocess import Preprocessing

BUDGET_KINDS = ("worst", "mean")
PRECISIONS = ("fp32", "fp16", "int8", "auto")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class MemberSpec:
    """One committee member: where its model comes from and how its input is made."""

    name: str
    preprocessing: Preprocessing
    onnx: Path | None = None
    factory: str | None = None
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    weights: Path | None = None
    labels: tuple[str, ...] | None = None

    @property
    def kind(self) -> str:
        return "onnx" if self.onnx is not None else "torch"


@dataclasses.dataclass(frozen=True)
class Budget:
    """A cost budget: ``macs`` or ``latency_ms`` (exactly one), on the ``worst`` or ``mean`` case.

    ``macs`` may be the string ``largest``: the largest single member's MACs. ``latency_ms`` is
    the latency of one call on ``batch`` images (default 1), measured on the build machine: the
    build profiles the members first (see :mod:`edge_committee.profile`).
    """

    kind: str = "worst"
    macs: float | str | None = None
    latency_ms: float | None = None
    accuracy_target: float | str | None = None
    batch: int = 1


@dataclasses.dataclass(frozen=True)
class CommitteeSpec:
    name: str
    labels: tuple[str, ...]
    members: tuple[MemberSpec, ...]
    data: Mapping[str, Mapping[str, Any]]
    budget: Budget
    base_dir: Path
    confidence: str = "max_prob"
    max_members: int = 4
    order: str = "cheapest_first"
    stage_overhead: float = 0.0
    batch_size: int = 256
    threads: int | None = None
    opset: int = 17
    parity_tolerance: float = 1e-4
    precision: str = "fp32"
    precision_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    calibration: Mapping[str, Any] | None = None
    source: Path | None = None

    def member(self, name: str) -> MemberSpec:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)


# ---------------------------------------------------------------------------------- helpers
def _check_keys(d: Any, allowed: set[str], where: str, required: tuple[str, ...] = ()) -> dict:
    if not isinstance(d, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(d).__name__} ({d!r})")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise SpecError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(allowed))}"
        )
    for key in required:
        if key not in d:
            raise SpecError(f"{where}: missing required key {key!r}")
    return dict(d)


def _choice(value: Any, allowed: tuple, where: str) -> Any:
    if value not in allowed:
        raise SpecError(f"{where}: {value!r} is not allowed; use one of {', '.join(map(str, allowed))}")
    return value


def _number(value: Any, where: str, positive: bool = True, integer: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer:
        ok = ok and float(value).is_integer()
    if not ok or (positive and value <= 0):
        kind = "a positive integer" if integer else "a positive number" if positive else "a number"
        raise SpecError(f"{where}: {value!r} must be {kind}")
    return int(value) if integer else float(value)


def _file(value: Any, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: {value!r} must be a file path")
    p = Path(os.path.expanduser(value))
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise SpecError(f"{where}: file not found: {p}")
    return p


def _labels(raw: Mapping[str, Any], base: Path) -> tuple[str, ...]:
    if "labels" in raw and "labels_file" in raw:
        raise SpecError("labels: give either 'labels' or 'labels_file', not both")
    if "labels_file" in raw:
        path = _file(raw["labels_file"], base, "labels_file")
        labels = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    elif "labels" in raw:
        labels = raw["labels"]
    else:
        raise SpecError("missing required key 'labels' (the class names, in output order)")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
        raise SpecError(f"labels: {labels!r} must be a list of at least 2 class names (strings)")
    if len(set(labels)) != len(labels):
        dup = next(x for x in labels if labels.count(x) > 1)
        raise SpecError(f"labels: {dup!r} appears more than once")
    return tuple(labels)


def _member(raw: Any, i: int, base: Path, labels: tuple[str, ...]) -> MemberSpec:
    where = f"members[{i}]"
    d = _check_keys(raw, {"name", "onnx", "torch", "preprocessing", "labels"}, where,
                    ("name", "preprocessing"))
    name = d["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(
            f"{where}.name: {name!r} must start with a letter or digit and use only letters, "
            "digits, '_', '.' and '-'"
        )
    where = f"members[{i}] ({name})"
    pp = Preprocessing.from_dict(d["preprocessing"], f"{where}.preprocessing")
    if ("onnx" in d) == ("torch" in d):
        raise SpecError(f"{where}: give exactly one of 'onnx' (a file) or 'torch' (factory + weights)")
    member_labels = None
    if "labels" in d:
        member_labels = tuple(d["labels"]) if isinstance(d["labels"], list) else None
        if member_labels != labels:
            raise SpecError(
                f"{where}.labels: {d['labels']!r} differ from the committee's labels {list(labels)!r}; "
                "all members must share one label set in the same order"
            )
    if "onnx" in d:
        return MemberSpec(name, pp, onnx=_file(d["onnx"], base, f"{where}.onnx"), labels=member_labels)
    t = _check_keys(d["torch"], {"factory", "kwargs", "weights"}, f"{where}.torch", ("factory", "weights"))
    factory = t["factory"]
    if not isinstance(factory, str) or ":" not in factory:
        raise SpecError(
            f"{where}.torch.factory: {factory!r} must be 'file.py:function' or 'package.module:function'"
        )
    file_part = factory.rsplit(":", 1)[0]
    if file_part.endswith(".py"):
        _file(file_part, base, f"{where}.torch.factory")
    kwargs = t.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise SpecError(f"{where}.torch.kwargs: {kwargs!r} must be a mapping")
    weights = _file(t["weights"], base, f"{where}.torch.weights")
    if weights.suffix not in (".safetensors", ".pt", ".pth", ".bin"):
        raise SpecError(
            f"{where}.torch.weights: {weights.name!r} must be .safetensors or a state dict "
            "(.pt/.pth/.bin, loaded with weights_only=True)"
        )
    return MemberSpec(name, pp, factory=factory, kwargs=dict(kwargs), weights=weights, labels=member_labels)


def _data(raw: Any) -> dict:
    d = _check_keys(raw, {"train", "validation", "test", "calibration"}, "data", ("validation",))
    allowed = {"format", "images", "labels", "path", "images_key", "labels_key", "start", "stop", "labeled"}
    for split, cfg in d.items():
        cfg = _check_keys(cfg, allowed, f"data.{split}", ("format",))
        _choice(cfg["format"], FORMATS, f"data.{split}.format")
        for key in ("start", "stop"):
            if key in cfg and not (isinstance(cfg[key], int) and not isinstance(cfg[key], bool)):
                raise SpecError(f"data.{split}.{key}: {cfg[key]!r} must be an integer")
        d[split] = cfg
    return d


def _budget(raw: Any) -> Budget:
    if raw is None:
        return Budget(kind="worst", macs="largest")
    d = _check_keys(raw, {"kind", "macs", "latency_ms", "accuracy_target", "batch"}, "budget")
    kind = _choice(d.get("kind", "worst"), BUDGET_KINDS, "budget.kind")
    if ("macs" in d) == ("latency_ms" in d):
        raise SpecError("budget: give exactly one of 'macs' or 'latency_ms'")
    macs = d.get("macs")
    if macs is not None and macs != "largest":
        macs = _number(macs, "budget.macs")
    lat = _number(d["latency_ms"], "budget.latency_ms") if "latency_ms" in d else None
    batch = _number(d.get("batch", 1), "budget.batch", integer=True)
    if "batch" in d and lat is None:
        raise SpecError("budget.batch: the batch size applies to a latency_ms budget only")
    return Budget(kind=kind, macs=macs, latency_ms=lat, accuracy_target=d.get("accuracy_target"), batch=batch)


# ---------------------------------------------------------------------------------- loading
def spec_from_dict(raw: Any, base_dir: Path, source: Path | None = None) -> CommitteeSpec:
    """Validate a parsed spec; relative paths resolve against ``base_dir``."""
    top = {"name", "labels", "labels_file", "members", "data", "budget", "selection",
           "evaluation", "export", "precision", "calibration"}
    d = _check_keys(raw, top, "spec", ("members", "data"))
    name = d.get("name", source.stem if source else "committee")
    labels = _labels(d, base_dir)
    members_raw = d["members"]
    if not isinstance(members_raw, list) or not members_raw:
        raise SpecError("members: must be a non-empty list of members")
    members = tuple(_member(m, i, base_dir, labels) for i, m in enumerate(members_raw))
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SpecError(f"members: the name {dup!r} is used twice; member names must be unique")
    sel = _check_keys(d.get("selection") or {}, {"confidence", "max_members", "order", "stage_overhead"}, "selection")
    ev = _check_keys(d.get("evaluation") or {}, {"batch_size", "threads"}, "evaluation")
    ex = _check_keys(d.get("export") or {}, {"opset", "parity_tolerance"}, "export")
    prec = d.get("precision", "fp32")
    prec_opts: dict = {}
    if isinstance(prec, Mapping):
        prec_opts = _check_keys(prec, {"mode", "tolerance", "int8_method", "percentile", "exclude",
                                          "keep_io_types", "retry_sensitive"}, "precision")
        prec = prec_opts.pop("mode", "fp32")
    _choice(prec, PRECISIONS, "precision" if not prec_opts else "precision.mode")
    opset = _number(ex.get("opset", 17), "export.opset", integer=True)
    if opset < 17:
        raise SpecError(f"export.opset: {opset} is too old; use 17 or newer")
    return CommitteeSpec(
        name=str(name),
        labels=labels,
        members=members,
        data=_data(d["data"]),
        budget=_budget(d.get("budget")),
        base_dir=base_dir,
        confidence=_choice(sel.get("confidence", "max_prob"), CONFIDENCE_FUNCTIONS, "selection.confidence"),
        max_members=_number(sel.get("max_members", 4), "selection.max_members", integer=True),
        order=_choice(sel.get("order", "cheapest_first"), ("cheapest_first", "any"), "selection.order"),
        stage_overhead=_number(sel.get("stage_overhead", 0.0), "selection.stage_overhead", positive=False),
        batch_size=_number(ev.get("batch_size", 256), "evaluation.batch_size", integer=True),
        threads=_number(ev["threads"], "evaluation.threads", integer=True) if ev.get("threads") else None,
        opset=opset,
        parity_tolerance=_number(ex.get("parity_tolerance", 1e-4), "export.parity_tolerance"),
        precision=prec,
        precision_options=prec_opts,
        calibration=d.get("calibration"),
        source=source,
    )


def load_spec(path: str | os.PathLike) -> CommitteeSpec:
    """Read and validate a committee spec YAML file."""
    from edge_committee._lazy import require

    yaml = require("yaml")
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise SpecError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    try:
        return spec_from_dict(raw, path.resolve().parent, source=path)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
