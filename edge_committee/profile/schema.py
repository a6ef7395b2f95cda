"""The device profile's JSON format (``edge_committee.profile/1``) and its validation.

.. code-block:: json

    {"schema": "edge_committee.profile/1", "name": "onnxrt-amd-epyc-2c-t2",
     "created": "2026-11-24T10:00:00+00:00", "duration_s": 21.3,
     "fingerprint": {"key": "onnxrt-amd-epyc-2c-t2", "backend": "onnxrt", "threads": 2,
                     "cpu": "AMD EPYC", "cores": 2, "clocks": {}, "device": {}, "versions": {}},
     "method": {"warmup_s": 0.1, "min_iters": 10, "...": "..."},
     "batch_sizes": [1, 8, 64], "source_shape": [28, 28, 1],
     "members": {"phi0": {"file": "members/phi0.fp32.onnx", "sha256": "...", "precision": "fp32",
                          "batches": {"1": TIMING, "8": TIMING, "64": TIMING},
                          "stage": {"1": TIMING, "8": TIMING, "64": TIMING}}},
     "overhead": {"call": BY_BATCH, "gather": BY_BATCH, "gate": BY_BATCH,
                  "preprocess": {"phi0": BY_BATCH}}}

``TIMING`` is :class:`~edge_committee.profile.timing.Timing` as a dict (``median_ms``, ``p90_ms``,
``p99_ms``, ``mean_ms``, ``min_ms``, ``iterations``, ``stable``, ``compute_median_ms``);
``BY_BATCH`` maps each batch size (a string) to a ``TIMING``. ``members.<m>.batches`` is the
member's inference, ``members.<m>.stage`` one call of the runtime with that member alone (see
:mod:`.profiler`); ``overhead`` holds the runtime's parts timed apart. Validation is a JSON Schema
(``jsonschema``) plus one check the schema cannot state: every timing table covers every batch
size of ``batch_sizes``.
"""

from __future__ import annotations

import os

from edge_committee._lazy import require
from edge_committee.errors import EdgeCommitteeError

SCHEMA = "edge_committee.profile/1"

#: the longest timing a profile may hold: about 11.6 days per call. Anything longer is not a
#: measurement, and sums of a few thousand such timings stay finite (1e308 overflowed to inf
#: with NumPy warnings in selection, t3 L8).
MAX_MS = 1e9
_MS = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_MS}
_TIMING = {
    "type": "object",
    "required": ["median_ms", "p90_ms", "p99_ms", "mean_ms", "iterations"],
    "properties": {
        "median_ms": _MS, "p90_ms": _MS, "p99_ms": _MS, "mean_ms": _MS,
        "min_ms": {"type": "number", "minimum": 0, "maximum": MAX_MS},
        "iterations": {"type": "integer", "minimum": 1},
        "stable": {"type": "boolean"},
        "compute_median_ms": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_MS},
    },
}
_BY_BATCH = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": {"pattern": "^[1-9][0-9]*$"},
    "additionalProperties": {"$ref": "#/$defs/timing"},
}
JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema", "name", "fingerprint", "batch_sizes", "members", "overhead"],
    "properties": {
        "schema": {"const": SCHEMA},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
        "fingerprint": {
            "type": "object",
            "required": ["key", "backend", "cpu", "cores"],
            "properties": {"key": {"type": "string"}, "backend": {"type": "string"},
                           "threads": {"type": ["integer", "null"], "minimum": 1},
                           "cores": {"type": "integer", "minimum": 1}},
        },
        "batch_sizes": {"type": "array", "minItems": 1, "uniqueItems": True,
                        "items": {"type": "integer", "minimum": 1}},
        "members": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["file", "precision", "batches", "stage"],
                "properties": {"file": {"type": "string"}, "sha256": {"type": "string"},
                               "precision": {"type": "string"}, "batches": {"$ref": "#/$defs/by_batch"},
                               "stage": {"$ref": "#/$defs/by_batch"}},
            },
        },
        "overhead": {
            "type": "object",
            "required": ["call", "gather", "gate", "preprocess"],
            "properties": {
                "call": {"$ref": "#/$defs/by_batch"},
                "gather": {"$ref": "#/$defs/by_batch"},
                "gate": {"$ref": "#/$defs/by_batch"},
                "preprocess": {"type": "object", "additionalProperties": {"$ref": "#/$defs/by_batch"}},
            },
        },
    },
    "$defs": {"timing": _TIMING, "by_batch": _BY_BATCH},
}


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def check_profile(doc: object, source: str | os.PathLike) -> dict:
    """Return ``doc`` if it is a valid profile, else raise one line naming ``source`` and the field."""
    jsonschema = require("jsonschema")
    validator = jsonschema.Draft202012Validator(JSON_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    hint = "make a new one with: edge-committee profile BUNDLE"
    if error is not None:
        raise EdgeCommitteeError(
            f"{os.fspath(source)} is not a valid latency profile ({SCHEMA}): {_where(error.absolute_path)}: "
            f"{error.message}; {hint}"
        )
    want = {str(b) for b in doc["batch_sizes"]}
    tables = [(f"members.{n}.{k}", m[k]) for n, m in doc["members"].items() for k in ("batches", "stage")]
    tables += [(f"overhead.{k}", doc["overhead"][k]) for k in ("call", "gather", "gate")]
    tables += [(f"overhead.preprocess.{n}", t) for n, t in doc["overhead"]["preprocess"].items()]
    for where, table in tables:
        if set(table) != want:
            raise EdgeCommitteeError(
                f"{os.fspath(source)} is not a valid latency profile: {where} has batch sizes "
                f"{sorted(table, key=int)}, expected {sorted(want, key=int)} (batch_sizes); {hint}"
            )
    missing = sorted(set(doc["members"]) - set(doc["overhead"]["preprocess"]))
    if missing:
        raise EdgeCommitteeError(
            f"{os.fspath(source)} is not a valid latency profile: overhead.preprocess lacks member "
            f"{missing[0]!r}; {hint}"
        )
    return doc  # type: ignore[return-value]
