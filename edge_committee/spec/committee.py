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
      - name: large-160
        shares: large             # a self-cascade stage: large's model at another input size
        preprocessing: {size: [160, 160], scale: 0.0078125, offset: -0.9921875}
    data:
      validation: {format: folder, path: val/}       # chooses the cascade
      test: {format: npz, path: test.npz}            # only for reporting
    budget: {macs: 4.0e8, kind: worst}   # or {latency_ms: 12, kind: mean, batch: 1}; macs: largest
    selection: {confidence: max_prob, max_members: 4}
    combiner: learned             # or average (default); or {kind: learned, folds: 5, l2: 0.001}
    evaluation: {batch_size: 256, threads: 2}
    export: {opset: 17, parity_tolerance: 1.0e-4}
    task: classification          # default; or segmentation with a tile grid (see spec/dense.py):
    # segmentation: {tile: 64, margin: 8, confidence: mean_max_prob}
    # or video: clips, each member with its own view of the clip (see spec/video.py):
    # video: {clip_frames: 16}, and per member view: {frames: 4, stride: 4}

Relative paths are resolved against the spec file's folder. Every error names the key, the
value (shortened) and what is allowed (:class:`~edge_committee.errors.SpecError`).

**A spec is trusted code.** A ``torch`` member's factory is imported and called, so a spec can
run anything its factory file or module does: build only specs you would run as a script.
What a spec cannot do by itself: name a standard-library callable as a factory (``os:system``,
``subprocess:run``, ``builtins:exec`` are refused before anything runs), unpickle weights
(``weights_only=True``, ``.safetensors``), or use YAML tags that build objects (safe loading).
A spec is at most 4 MiB, expands to at most 100,000 YAML nodes (alias bombs are refused before
they are built), and may not repeat a key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import reprlib
import sys
import sysconfig
import unicodedata
from pathlib import Path
from typing import Any, Mapping

from edge_committee.cascade.clips import ClipView
from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS
from edge_committee.data.readers import FORMATS
from edge_committee.errors import SpecError
from edge_committee.spec.dense import SegmentationSpec, check_segmentation_members, parse_segmentation, parse_task
from edge_committee.spec.preprocess import Preprocessing
from edge_committee.spec.video import VideoSpec, check_video_members, parse_video, parse_view

BUDGET_KINDS = ("worst", "mean")
PRECISIONS = ("fp32", "fp16", "int8", "auto")
#: Member names: file-name safe, at most 100 characters (a bundle file is ``<name>.<precision>.onnx``).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: The precision variants of member ``x`` are named ``x.fp16``, ``x.int8``: a spec name may not look like one.
PRECISION_SUFFIXES = (".fp32", ".fp16", ".int8")
MAX_SPEC_BYTES = 4 << 20
#: YAML nodes a spec may expand to, aliases counted at every use (an alias bomb expands to 10**9).
MAX_SPEC_NODES = 100_000

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = _SHORT.maxset = 6
_SHORT.maxlevel = 3


def _short(value: Any) -> str:
    """``repr(value)``, shortened: an error message never grows with the value (a huge list, an alias bomb)."""
    return _SHORT.repr(value)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


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
    shares: str | None = None  #: the member whose model this one runs (with its own preprocessing)
    view: ClipView | None = None  #: a video member's frames of the clip (``task: video`` only)

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
    combiner: Any = None  #: ``None``/"average", "learned" or a mapping (see select.learned.CombinerConfig)
    task: str = "classification"  #: classification | segmentation | video (:mod:`.dense`, :mod:`.video`)
    segmentation: SegmentationSpec | None = None  #: the tile grid of a segmentation committee
    video: VideoSpec | None = None  #: the clip of a video committee (see :mod:`edge_committee.spec.video`)

    def member(self, name: str) -> MemberSpec:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)


# ---------------------------------------------------------------------------------- helpers
def _check_keys(d: Any, allowed: set[str], where: str, required: tuple[str, ...] = ()) -> dict:
    if not isinstance(d, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(d).__name__} ({_short(d)})")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise SpecError(
            f"{where}: unknown key {_short(unknown[0])}; allowed keys: {', '.join(sorted(allowed))}"
        )
    for key in required:
        if key not in d:
            raise SpecError(f"{where}: missing required key {key!r}")
    return dict(d)


def _choice(value: Any, allowed: tuple, where: str) -> Any:
    if value not in allowed:
        raise SpecError(f"{where}: {_short(value)} is not allowed; use one of {', '.join(map(str, allowed))}")
    return value


def _number(value: Any, where: str, positive: bool = True, integer: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer:
        ok = ok and float(value).is_integer()
    if not ok or (positive and value <= 0):
        kind = "a positive integer" if integer else "a positive number" if positive else "a number"
        raise SpecError(f"{where}: {_short(value)} must be {kind}")
    return int(value) if integer else float(value)


def _file(value: Any, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: {_short(value)} must be a file path")
    try:
        p = Path(os.path.expanduser(value))
        p = p if p.is_absolute() else base / p
        found = p.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        why = exc.strerror if isinstance(exc, OSError) else exc
        raise SpecError(f"{where}: {_short(value)} is not a usable file path ({why})") from None
    if not found:
        raise SpecError(f"{where}: file not found: {p}")
    return p


def _labels(raw: Mapping[str, Any], base: Path) -> tuple[str, ...]:
    if "labels" in raw and "labels_file" in raw:
        raise SpecError("labels: give either 'labels' or 'labels_file', not both")
    if "labels_file" in raw:
        path = _file(raw["labels_file"], base, "labels_file")
        try:
            labels = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"labels_file: cannot read {path} as UTF-8 text ({exc})") from None
    elif "labels" in raw:
        labels = raw["labels"]
    else:
        raise SpecError("missing required key 'labels' (the class names, in output order)")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
        raise SpecError(f"labels: {_short(labels)} must be a list of at least 2 class names (strings)")
    for i, label in enumerate(labels):
        if _has_control(label):
            raise SpecError(f"labels[{i}]: {_short(label)} holds a control character; class names must be "
                            "printable text")
        if not label or len(label) > 1000:
            raise SpecError(f"labels[{i}]: {_short(label)} must be 1 to 1000 characters")
    if len(set(labels)) != len(labels):
        dup = next(x for x in labels if labels.count(x) > 1)
        raise SpecError(f"labels: {_short(dup)} appears more than once")
    return tuple(labels)


def _member(raw: Any, i: int, base: Path, labels: tuple[str, ...], task: str = "classification") -> MemberSpec:
    where = f"members[{i}]"
    d = _check_keys(raw, {"name", "onnx", "torch", "preprocessing", "labels", "shares", "view"}, where,
                    ("name", "preprocessing"))
    name = d["name"]
    if isinstance(name, str) and len(name) > 100:
        raise SpecError(f"{where}.name: {_short(name)} is {len(name)} characters; use at most 100 characters")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(
            f"{where}.name: {_short(name)} must start with a letter or digit and use only letters, "
            "digits, '_', '.' and '-'"
        )
    if name.endswith(PRECISION_SUFFIXES):
        raise SpecError(
            f"{where}.name: {name!r} must not end in .fp32, .fp16 or .int8: those name the precision "
            f"variants of a member (the FP16 variant of {name.rsplit('.', 1)[0]!r} is {name!r}); rename it"
        )
    where = f"members[{i}] ({name})"
    pp = Preprocessing.from_dict(d["preprocessing"], f"{where}.preprocessing")
    view = parse_view(d.get("view"), where, task)
    if "shares" in d:
        if "onnx" in d or "torch" in d:
            raise SpecError(f"{where}: 'shares' runs another member's model; give no 'onnx' or 'torch' with it")
        if not isinstance(d["shares"], str):
            raise SpecError(f"{where}.shares: {d['shares']!r} must be the name of another member")
        return MemberSpec(name, pp, shares=d["shares"], view=view)
    if ("onnx" in d) == ("torch" in d):
        raise SpecError(f"{where}: give exactly one of 'onnx' (a file) or 'torch' (factory + weights), "
                        "or 'shares' (another member's model)")
    member_labels = None
    if "labels" in d:
        member_labels = tuple(d["labels"]) if isinstance(d["labels"], list) else None
        if member_labels != labels:
            raise SpecError(
                f"{where}.labels: {_short(d['labels'])} differ from the committee's labels {_short(list(labels))}; "
                "all members must share one label set in the same order"
            )
    if "onnx" in d:
        return MemberSpec(name, pp, onnx=_file(d["onnx"], base, f"{where}.onnx"), labels=member_labels, view=view)
    t = _check_keys(d["torch"], {"factory", "kwargs", "weights"}, f"{where}.torch", ("factory", "weights"))
    factory = t["factory"]
    if not isinstance(factory, str) or ":" not in factory:
        raise SpecError(
            f"{where}.torch.factory: {_short(factory)} must be 'file.py:function' or 'package.module:function'"
        )
    file_part = factory.rsplit(":", 1)[0]
    if file_part.endswith(".py"):
        _check_not_stdlib_file(_file(file_part, base, f"{where}.torch.factory"), factory, f"{where}.torch.factory")
    else:
        _check_not_stdlib_module(file_part, factory, f"{where}.torch.factory")
    kwargs = t.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise SpecError(f"{where}.torch.kwargs: {_short(kwargs)} must be a mapping")
    weights = _file(t["weights"], base, f"{where}.torch.weights")
    if weights.suffix not in (".safetensors", ".pt", ".pth", ".bin"):
        raise SpecError(
            f"{where}.torch.weights: {weights.name!r} must be .safetensors or a state dict "
            "(.pt/.pth/.bin, loaded with weights_only=True)"
        )
    return MemberSpec(name, pp, factory=factory, kwargs=dict(kwargs), weights=weights, labels=member_labels,
                      view=view)


def _resolve_shares(members: tuple[MemberSpec, ...]) -> tuple[MemberSpec, ...]:
    """Give each ``shares: X`` member X's model source (X must have its own model)."""
    by_name = {m.name: m for m in members}
    out = []
    for m in members:
        if m.shares is not None:
            src = by_name.get(m.shares)
            if src is None or src.shares is not None or src is m:
                owners = [x.name for x in members if x.shares is None and x is not m]
                raise SpecError(f"members ({m.name}).shares: {m.shares!r} is not a member with its own model; "
                                f"use one of {owners}")
            m = dataclasses.replace(m, onnx=src.onnx, factory=src.factory, kwargs=dict(src.kwargs),
                                    weights=src.weights, labels=m.labels or src.labels)
        out.append(m)
    return tuple(out)


def _combiner(value: Any) -> Any:
    from edge_committee.errors import EdgeCommitteeError
    from edge_committee.select.learned import CombinerConfig

    try:
        CombinerConfig.from_value(value)
    except EdgeCommitteeError as exc:
        raise SpecError(str(exc)) from None
    return value


_STDLIB_REFUSAL = ("is in the standard library; a factory must be your own code that builds a model (a spec "
                   "is trusted code, but a standard-library callable such as os:system or subprocess:run is "
                   "refused before anything runs)")


def _check_not_stdlib_module(module: str, factory: str, where: str) -> None:
    """Refuse ``module:callable`` factories from the standard library (``os:system`` runs a shell command)."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or top.startswith("__"):
        raise SpecError(f"{where}: {factory!r}: module {top!r} {_STDLIB_REFUSAL}")


def _check_not_stdlib_file(path: Path, factory: str, where: str) -> None:
    """Refuse a factory file that is a standard-library module of *any* Python on the machine.

    Recognised by module name, not by folder: the file's import name (its stem, under the
    packages above it) is a standard-library module name, and the folder it is imported from is
    a standard library (it holds ``os.py``, or is named ``pythonX.Y``), outside site-/dist-packages.
    So ``/usr/lib/python3.11/os.py:system`` is refused from a venv of another Python as well.
    """
    real = Path(os.path.realpath(path))
    if "site-packages" in real.parts or "dist-packages" in real.parts:
        return
    for key in ("stdlib", "platstdlib"):
        lib = sysconfig.get_paths().get(key)
        if lib and Path(os.path.realpath(lib)) in real.parents:
            raise SpecError(f"{where}: {factory!r}: {real} {_STDLIB_REFUSAL}")
    root, parts = real.parent, [real.stem]
    while (root / "__init__.py").is_file() and root.parent != root:  # climb to the import root
        parts.insert(0, root.name)
        root = root.parent
    top = parts[0]
    named_like_stdlib = top in sys.stdlib_module_names or top in sys.builtin_module_names
    if named_like_stdlib and ((root / "os.py").is_file() or re.fullmatch(r"python\d+(\.\d+)?", root.name)):
        raise SpecError(f"{where}: {factory!r}: {real} is the module {'.'.join(parts)!r} of a Python standard "
                        f"library ({root}); {_STDLIB_REFUSAL.split('; ', 1)[1]}")


def _data(raw: Any) -> dict:
    d = _check_keys(raw, {"train", "validation", "test", "calibration"}, "data", ("validation",))
    allowed = {"format", "images", "labels", "path", "images_key", "labels_key", "start", "stop", "labeled"}
    for split, cfg in d.items():
        cfg = _check_keys(cfg, allowed, f"data.{split}", ("format",))
        _choice(cfg["format"], FORMATS, f"data.{split}.format")
        for key in ("start", "stop"):
            if key in cfg and not (isinstance(cfg[key], int) and not isinstance(cfg[key], bool)):
                raise SpecError(f"data.{split}.{key}: {_short(cfg[key])} must be an integer")
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
           "evaluation", "export", "precision", "calibration", "combiner", "task", "segmentation", "video"}
    d = _check_keys(raw, top, "spec", ("members", "data"))
    name = d.get("name", source.stem if source else "committee")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise SpecError(f"name: {_short(name)} must be a name of 1 to 200 characters")
    if _has_control(name):
        raise SpecError(f"name: {_short(name)} holds a control character; use printable text")
    labels = _labels(d, base_dir)
    members_raw = d["members"]
    if not isinstance(members_raw, list) or not members_raw:
        raise SpecError("members: must be a non-empty list of members")
    task = parse_task(d.get("task", "classification"))
    members = tuple(_member(m, i, base_dir, labels, task) for i, m in enumerate(members_raw))
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SpecError(f"members: the name {dup!r} is used twice; member names must be unique")
    members = _resolve_shares(members)
    segmentation = parse_segmentation(d.get("segmentation"), task)
    if segmentation is not None:
        check_segmentation_members(members, segmentation)
        if d.get("combiner") not in (None, "average"):
            raise SpecError("combiner: a segmentation committee averages its members' probabilities; "
                            "remove 'combiner' or set it to 'average'")
    video = parse_video(d.get("video"), task)
    if video is not None:
        check_video_members(members, video)
        if d.get("combiner") not in (None, "average"):
            raise SpecError("combiner: a video committee averages its members' probabilities; "
                            "remove 'combiner' or set it to 'average'")
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
        combiner=_combiner(d.get("combiner")),
        task=task,
        segmentation=segmentation,
        video=video,
    )


def load_spec(path: str | os.PathLike) -> CommitteeSpec:
    """Read and validate a committee spec YAML file (see the module doc for its limits)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: {size} bytes is too large for a spec (at most {MAX_SPEC_BYTES}); "
                        "put long label lists in a labels_file")
    try:
        raw = _load_yaml(path.read_text(encoding="utf-8"), path)
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return spec_from_dict(raw, path.resolve().parent, source=path)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def _load_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load`` plus: duplicate keys refused, expansion capped, nesting errors as one line."""
    from edge_committee._lazy import require

    yaml = require("yaml")
    try:
        loader = _spec_loader(yaml)(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise SpecError(f"{path}: not valid YAML{at}: {_short_text(getattr(exc, 'problem', None) or exc)}") from None
    except RecursionError:
        raise SpecError(f"{path}: YAML nested too deeply to be a spec") from None


def _short_text(x: Any) -> str:
    text = str(x)
    return text if len(text) <= 300 else text[:297] + "..."


_LOADER: dict = {}


def _spec_loader(yaml):
    """A ``yaml.SafeLoader`` subclass that refuses duplicate keys and alias bombs (built once)."""
    if "cls" in _LOADER:
        return _LOADER["cls"]
    from yaml.constructor import ConstructorError
    from yaml.nodes import MappingNode, SequenceNode

    class SpecLoader(yaml.SafeLoader):
        def get_single_node(self):
            node = super().get_single_node()
            if node is not None:
                _check_expansion(node, MappingNode, SequenceNode, ConstructorError)
            return node

        def construct_mapping(self, node, deep=False):
            if isinstance(node, MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # '<<' merges; explicit keys may override what it brings
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.get(key)
                    except TypeError:
                        continue  # unhashable: the base class reports it
                    if first is not None:
                        raise ConstructorError(
                            "while constructing a mapping", node.start_mark,
                            f"found duplicate key {_short(key)} (first at line {first.line + 1}); "
                            "each key may appear once", key_node.start_mark)
                    seen[key] = key_node.start_mark
            return super().construct_mapping(node, deep=deep)

    _LOADER["cls"] = SpecLoader
    return SpecLoader


def _check_expansion(root, mapping_node, sequence_node, error) -> None:
    """Raise ``error`` if the node graph expands to more than MAX_SPEC_NODES nodes or is recursive.

    An alias is the same node object as its anchor, so sizes are memoized per node: the walk costs
    the number of distinct nodes, while the count is what a full expansion (a repr) would visit.
    """
    size: dict[int, int] = {}
    visiting: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in size:
            continue
        if isinstance(node, mapping_node):
            children = [c for pair in node.value for c in pair]
        elif isinstance(node, sequence_node):
            children = list(node.value)
        else:
            children = []
        if not children_done:
            if id(node) in visiting:
                raise error(None, None, "found a recursive alias (an anchor used inside itself)", node.start_mark)
            visiting.add(id(node))
            stack.append((node, True))
            for c in children:
                if id(c) in visiting and id(c) not in size:
                    raise error(None, None, "found a recursive alias (an anchor used inside itself)", c.start_mark)
                stack.append((c, False))
            continue
        visiting.discard(id(node))
        total = 1 + sum(size[id(c)] for c in children)
        if total > MAX_SPEC_NODES:
            raise error(None, None, f"the aliases expand to more than {MAX_SPEC_NODES} values (an alias bomb?); "
                        "write the values out", node.start_mark)
        size[id(node)] = total
