"""What selection reads: cached member outputs on the validation and test splits, and costs.

:class:`SelectionData` holds, per member name, the logits on the validation split (N_val, C)
and the test split (N_test, C), its cost, and the labels of both splits. Validation labels may
be ``None`` (label-free selection, see :mod:`.frontier`); test labels may be ``None`` (no test
accuracy is reported then). Costs are in ``cost_unit``: MACs by default, or milliseconds when
they come from a measured latency profile (:func:`load_profile`, or a device profile of
:mod:`edge_committee.profile` through :class:`StageCosts`, which makes them batch-aware).

Loaders:

- :func:`load_outputs_npz` reads a bundle's ``outputs.npz`` (keys ``"<member>/validation"``,
  ``"<member>/test"``, ``"labels/validation"``, ``"labels/test"``).
- :func:`load_profile` reads a latency profile, JSON
  ``{"unit": "ms", "members": {"<member>": <latency>, ...}}``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import reprlib
import zipfile
from collections.abc import Callable, Mapping

import numpy as np

from edge_committee.errors import EdgeCommitteeError


def _as_logits(name: str, split: str, x: object) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise EdgeCommitteeError(
            f"member {name!r}: {split} logits have shape {arr.shape}, expected (N, C) with C >= 2"
        )
    if arr.dtype not in (np.float16, np.float32, np.float64):
        raise EdgeCommitteeError(
            f"member {name!r}: {split} logits have dtype {arr.dtype}, expected a float type"
        )
    return arr


def _as_labels(split: str, y: object, n: int, c: int) -> np.ndarray | None:
    if y is None:
        return None
    arr = np.asarray(y)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise EdgeCommitteeError(
            f"{split} labels have shape {arr.shape} and dtype {arr.dtype}, expected ({n},) integers"
        )
    if n and (arr.min() < 0 or arr.max() >= c):
        raise EdgeCommitteeError(f"{split} labels must lie in [0, {c}); got [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class StageCosts:
    """Batch-aware stage costs: a latency model at one batch size (see :mod:`edge_committee.profile`).

    Without it a cascade stage costs ``costs[name] * reach`` on average, ``reach`` being the
    fraction of samples that reach the stage: right for MACs and for latency at batch 1. At a
    larger batch a stage runs once on the survivors, whose number varies, and its latency is not
    proportional to that number; ``expected`` gives the expected cost instead.

    Attributes:
        expected: member name -> ``f(reach)``: the expected cost of that member's stage (member
            plus its per-stage runtime overhead) per call, for an array of reach fractions in
            [0, 1]; ``f(1.0)`` is its cost on the whole batch (the worst case).
        per_call: cost paid once per call, whatever runs (the runtime's fixed overhead).
        batch: the batch size the costs are for.
        description: where the costs come from, for reports (e.g. the profile's name).
    """

    expected: Mapping[str, Callable[[np.ndarray], np.ndarray]]
    per_call: float = 0.0
    batch: int = 1
    description: str = ""

    def full(self, name: str) -> float:
        """The stage's cost on the whole batch."""
        return float(np.asarray(self.expected[name](np.ones(1)))[0])

    def to_dict(self) -> dict:
        return {"batch": self.batch, "per_call": self.per_call, "description": self.description}


@dataclasses.dataclass
class SelectionData:
    """Member outputs and costs for model selection.

    Attributes:
        val_logits: member name -> (N_val, C) float logits on the validation split.
        test_logits: member name -> (N_test, C) float logits on the test split, or ``None``.
        costs: member name -> cost of one inference in ``cost_unit`` (MACs or ms), > 0.
        val_labels: (N_val,) int labels, or ``None`` for label-free selection.
        test_labels: (N_test,) int labels, or ``None``.
        cost_unit: ``"MACs"`` (default) or ``"ms"``.
        groups: member name -> group; members of one group never appear together in an ensemble
            or cascade (e.g. one model at several precisions). Default: every member alone.
        stage_costs: batch-aware costs (:class:`StageCosts`), or ``None`` (cost proportional to
            the samples a stage runs on); set with :meth:`with_stage_costs`.
    """

    val_logits: Mapping[str, np.ndarray]
    test_logits: Mapping[str, np.ndarray] | None
    costs: Mapping[str, float]
    val_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    cost_unit: str = "MACs"
    groups: Mapping[str, str] | None = None
    stage_costs: StageCosts | None = None

    def __post_init__(self) -> None:
        if not self.val_logits:
            raise EdgeCommitteeError("selection needs at least one member; got none")
        if self.groups is not None:
            unknown = sorted(set(self.groups) - set(self.val_logits))
            if unknown:
                raise EdgeCommitteeError(f"groups name unknown members {unknown}")
        names = list(self.val_logits)
        if set(self.costs) != set(names):
            raise EdgeCommitteeError(
                f"costs are given for {sorted(self.costs)} but outputs for {sorted(names)}; "
                "give one cost per member"
            )
        self.val_logits = {n: _as_logits(n, "validation", self.val_logits[n]) for n in names}
        shapes = {x.shape for x in self.val_logits.values()}
        if len(shapes) != 1:
            raise EdgeCommitteeError(f"validation logits differ in shape across members: {shapes}")
        n_val, c = shapes.pop()
        self.costs = {n: self._check_cost(n, self.costs[n]) for n in names}
        if self.stage_costs is not None and set(names) - set(self.stage_costs.expected):
            missing = sorted(set(names) - set(self.stage_costs.expected))
            raise EdgeCommitteeError(f"the latency model has no entry for members {missing}")
        if self.test_logits is not None:
            if set(self.test_logits) != set(names):
                raise EdgeCommitteeError(
                    f"test logits are given for {sorted(self.test_logits)}, expected {sorted(names)}"
                )
            self.test_logits = {n: _as_logits(n, "test", self.test_logits[n]) for n in names}
            t_shapes = {x.shape for x in self.test_logits.values()}
            if len(t_shapes) != 1 or next(iter(t_shapes))[1] != c:
                raise EdgeCommitteeError(f"test logits must all be (N_test, {c}); got {t_shapes}")
        self.val_labels = _as_labels("validation", self.val_labels, n_val, c)
        n_test = self.num_test
        if self.test_labels is not None and self.test_logits is None:
            raise EdgeCommitteeError("test labels are given without test logits")
        self.test_labels = _as_labels("test", self.test_labels, n_test, c)

    def group_of(self, name: str) -> str:
        """The member's group (its own name unless ``groups`` says otherwise)."""
        return str(self.groups.get(name, name)) if self.groups else name

    @staticmethod
    def _check_cost(name: str, cost: object) -> float:
        value = float(cost)  # type: ignore[arg-type]
        if not (math.isfinite(value) and value > 0):
            raise EdgeCommitteeError(f"member {name!r}: cost must be a positive number, got {cost!r}")
        return value

    @property
    def names(self) -> list[str]:
        """Member names, cheapest first (ties keep the given order)."""
        given = list(self.val_logits)
        return sorted(given, key=lambda n: (self.costs[n], given.index(n)))

    @property
    def num_val(self) -> int:
        return next(iter(self.val_logits.values())).shape[0]

    @property
    def num_test(self) -> int:
        if self.test_logits is None:
            return 0
        return next(iter(self.test_logits.values())).shape[0]

    @property
    def num_classes(self) -> int:
        return next(iter(self.val_logits.values())).shape[1]

    @property
    def label_free(self) -> bool:
        """True when there are no validation labels (selection by agreement with a reference)."""
        return self.val_labels is None

    def with_costs(self, costs: Mapping[str, float], unit: str) -> SelectionData:
        """A copy with other costs (e.g. measured latency in ms from :func:`load_profile`)."""
        missing = sorted(set(self.val_logits) - set(costs))
        if missing:
            raise EdgeCommitteeError(f"the cost profile has no entry for members {missing}")
        return dataclasses.replace(
            self, costs={n: costs[n] for n in self.val_logits}, cost_unit=unit, stage_costs=None
        )

    def with_stage_costs(self, stage_costs: StageCosts, unit: str = "ms") -> SelectionData:
        """A copy costed by a batch-aware model; ``costs`` become each stage's whole-batch cost."""
        missing = sorted(set(self.val_logits) - set(stage_costs.expected))
        if missing:
            raise EdgeCommitteeError(f"the latency model has no entry for members {missing}")
        costs = {n: stage_costs.full(n) for n in self.val_logits}
        return dataclasses.replace(self, costs=costs, cost_unit=unit, stage_costs=stage_costs)

    @property
    def per_call_cost(self) -> float:
        """Cost paid once per call by every candidate (0 without :attr:`stage_costs`)."""
        return self.stage_costs.per_call if self.stage_costs is not None else 0.0

    def stage_cost_fn(self, name: str, overhead: float = 0.0) -> Callable[[np.ndarray], np.ndarray] | None:
        """``reach -> expected cost`` of ``name``'s stage plus ``overhead`` per stage run, or None
        when costs are proportional (no :attr:`stage_costs`)."""
        if self.stage_costs is None:
            return None
        f = self.stage_costs.expected[name]
        return lambda reach: np.asarray(f(reach), np.float64) + overhead * np.asarray(reach, np.float64)


@dataclasses.dataclass(frozen=True)
class CostProfile:
    """Measured cost per member: ``costs[name]`` in ``unit`` (``"ms"`` for latency)."""

    unit: str
    costs: dict[str, float]


#: A latency profile is a few hundred bytes; anything near this is not one.
_MAX_PROFILE_BYTES = 16 << 20


def load_profile(path: str | os.PathLike) -> CostProfile:
    """Read a latency profile.

    Format (JSON)::

        {"unit": "ms", "members": {"b0": 1.9, "b1": 3.2, ...}}

    ``unit`` is a free-form string used in reports (default ``"ms"`` when absent); every latency
    must be a positive number. Use it with ``data.with_costs(profile.costs, profile.unit)``.
    """
    where = f"the cost profile {os.fspath(path)!r}"
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.loads(f.read(_MAX_PROFILE_BYTES + 1))
    except OSError as exc:
        raise EdgeCommitteeError(f"cannot read {where}: {exc}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, too deep
        raise EdgeCommitteeError(f"{where} is not JSON: {str(exc)[:200]}") from None
    members = doc.get("members") if isinstance(doc, dict) else None
    if not isinstance(members, dict) or not members:
        raise EdgeCommitteeError(
            f"{where} needs a non-empty object 'members': "
            '{"unit": "ms", "members": {"<member>": <latency>}}'
        )
    unit = doc.get("unit", "ms")
    if not isinstance(unit, str) or not 0 < len(unit) <= 32 or not unit.isprintable():
        raise EdgeCommitteeError(f"{where}: unit must be a short name such as \"ms\", got {reprlib.repr(unit)}")
    costs = {}
    for name, value in members.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        if not ok:
            raise EdgeCommitteeError(
                f"{where}: member {reprlib.repr(name)}: cost must be a positive number, got {reprlib.repr(value)}"
            )
        costs[name] = float(value)
    return CostProfile(unit=unit, costs=costs)


def mmap_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, memory-mapped (read-only) where the archive stores them
    uncompressed (``np.savez``, as bundles do), else read into memory: selection then touches one
    member's outputs at a time instead of holding every member's in RAM."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            if info.compress_type != zipfile.ZIP_STORED:
                with zf.open(info) as f:
                    out[key] = np.lib.format.read_array(f, allow_pickle=False)
                continue
            raw.seek(info.header_offset)
            local = raw.read(30)  # local file header: name and extra lengths at bytes 26-29
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(
                local[28:30], "little")
            raw.seek(start)
            version = np.lib.format.read_magic(raw)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(raw)
            if dtype.hasobject:
                raise ValueError(f"{key}: object arrays are not outputs")
            out[key] = np.memmap(path, dtype=dtype, mode="r", offset=raw.tell(), shape=shape,
                                 order="F" if fortran else "C")
    return out


def load_outputs_npz(
    path: str | os.PathLike,
    macs: Mapping[str, float],
    members: list[str] | None = None,
    mmap: bool = False,
) -> SelectionData:
    """Read a bundle's cached outputs into :class:`SelectionData` with MACs as costs.

    ``path``: ``outputs.npz`` with float logits under ``"<member>/validation"`` and
    ``"<member>/test"`` and int labels under ``"labels/validation"`` and ``"labels/test"``
    (either label key may be absent). ``macs``: member name -> MACs per inference (e.g. from the
    bundle's ``manifest.json``). ``members``: which members to load (default: every member in
    ``macs``). ``mmap``: memory-map the outputs (:func:`mmap_npz`) instead of reading them.
    """
    names = list(members) if members is not None else list(macs)
    if mmap:
        try:
            arrays = mmap_npz(path)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise EdgeCommitteeError(f"cannot read member outputs {os.fspath(path)!r}: {exc}") from None
        return _from_arrays(path, arrays, names, macs)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EdgeCommitteeError(f"cannot read member outputs {os.fspath(path)!r}: {exc}") from None
    with npz:
        return _from_arrays(path, npz, names, macs)


def _from_arrays(path, npz: Mapping[str, np.ndarray], names: list[str], macs: Mapping[str, float]) -> SelectionData:
    keys = set(npz.keys())
    missing = [f"{n}/validation" for n in names if f"{n}/validation" not in keys]
    if missing:
        raise EdgeCommitteeError(f"{os.fspath(path)!r} lacks {missing}; it holds {sorted(keys)}")
    val = {n: npz[f"{n}/validation"] for n in names}
    has_test = all(f"{n}/test" in keys for n in names)
    test = {n: npz[f"{n}/test"] for n in names} if has_test else None
    y_val = npz["labels/validation"] if "labels/validation" in keys else None
    y_test = npz["labels/test"] if has_test and "labels/test" in keys else None
    return SelectionData(
        val_logits=val,
        test_logits=test,
        costs={n: macs[n] for n in names},
        val_labels=y_val,
        test_labels=y_test,
        cost_unit="MACs",
    )
