"""What calibrated a member, recorded in the bundle so the INT8 model can be rebuilt and audited."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from edge_committee._util import sha256_file as _sha256_file
from edge_committee.calibration._atomic import write_json_atomic
from edge_committee.errors import EdgeCommitteeError

#: bump when a field changes meaning
RECORD_SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class CalibrationRecord:
    """Where the calibration samples came from and how they were chosen.

    Attributes:
        source: the source as configured (``kind``, ``path``, keys, split slice ...).
        files: ``{"path": str, "sha256": str}`` per file read: the selected images of a folder,
            or the one array / video / IDX files of the other sources.
        indices: the selected sample (frame) numbers of an array, video or split source; None
            for a folder (its ``files`` are the selection).
        count: samples used.
        seed: the seed of the selection.
        method: the calibration method (``minmax``, ``entropy``, ``percentile``), or None
            before quantization.
        stratified: whether the selection was stratified by label.
        total: samples the source had to choose from.
    """

    source: Mapping[str, Any]
    files: tuple[Mapping[str, str], ...]
    indices: tuple[int, ...] | None
    count: int
    seed: int
    method: str | None = None
    stratified: bool = False
    total: int = 0

    def with_method(self, method: str) -> "CalibrationRecord":
        return dataclasses.replace(self, method=method)

    def to_dict(self) -> dict:
        return {
            "schema": RECORD_SCHEMA,
            "source": dict(self.source),
            "files": [dict(f) for f in self.files],
            "indices": None if self.indices is None else [int(i) for i in self.indices],
            "count": int(self.count),
            "seed": int(self.seed),
            "method": self.method,
            "stratified": bool(self.stratified),
            "total": int(self.total),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CalibrationRecord":
        if d.get("schema") != RECORD_SCHEMA:
            raise EdgeCommitteeError(
                f"calibration record schema {d.get('schema')!r} is not {RECORD_SCHEMA}; "
                "rebuild the bundle with this version"
            )
        indices = d.get("indices")
        return cls(
            source=dict(d["source"]),
            files=tuple(dict(f) for f in d["files"]),
            indices=None if indices is None else tuple(int(i) for i in indices),
            count=int(d["count"]),
            seed=int(d["seed"]),
            method=d.get("method"),
            stratified=bool(d.get("stratified", False)),
            total=int(d.get("total", 0)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def digest(self) -> str:
        """sha256 of the canonical JSON: the manifest's calibration hash."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record as JSON (atomically: no half-written file on failure)."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CalibrationRecord":
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise EdgeCommitteeError(f"calibration record not found: {path}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise EdgeCommitteeError(f"corrupt calibration record {path}: {exc}") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes; a missing or unreadable file is named in the error."""
    try:
        return _sha256_file(path, chunk)
    except FileNotFoundError:
        raise EdgeCommitteeError(f"calibration file not found: {path}") from None
    except OSError as exc:
        raise EdgeCommitteeError(f"cannot read calibration file {path}: {exc}") from None


def file_entry(path: str | os.PathLike) -> dict[str, str]:
    return {"path": str(path), "sha256": sha256_file(path)}
