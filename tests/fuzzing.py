"""Shared pieces of the property-based fuzz suite (manifest, spec, profiles, Triton requests).

``EC_FUZZ_EXAMPLES`` sets the cases per target: a few hundred by default (CI); the recorded long
run (docs/bundle.md) sets it to 2,500 for 4 targets = 10,000 cases. ``EC_FUZZ_REPORT=FILE`` appends
each target's outcome counts as a JSON line. Every case runs under a 10 s deadline (a hang fails).
"""

from __future__ import annotations

import collections
import copy
import datetime
import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("EC_FUZZ_EXAMPLES", "200"))
#: hypothesis settings of every fuzz target: the case count, a 10 s hang bound, no shrinking budget cap
FUZZ = settings(max_examples=EXAMPLES, deadline=datetime.timedelta(seconds=10), derandomize=EXAMPLES <= 500,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much], database=None)

#: values a hostile edit puts anywhere in a JSON / YAML document
HOSTILE = [None, True, False, 0, -1, 1, 3, 2**31, 2**63, -(2**63), 1e308, -1e308, 1e-320, float("nan"), float("inf"),
           float("-inf"), 0.5, -0.0, "", "x", "\ud800", "a\udfffb", "../x", "../../etc/passwd", "/etc/passwd",
           "members//x", "members/../manifest.json", "\x1b[31mred", "\x00", "a" * 5000, "manifest.json", "max_prob",
           "ensemble", "fp16", [], {}, [1, 2], [None], {"a": 1}, [[[[[[]]]]]], ["a", "b"], {"": None}]


def _slots(doc: Any, path=()):
    """Every (path) to a value in a JSON-like tree (dict keys and list indices)."""
    yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _slots(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _slots(v, path + (i,))


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutated(draw, doc: Any, max_ops: int = 3) -> tuple[Any, list[str]]:
    """``doc`` with 1..max_ops structural edits: replace, delete, rename a key, duplicate, swap, retype."""
    doc = copy.deepcopy(doc)
    ops = []
    for _ in range(draw(st.integers(1, max_ops))):
        slots = [p for p in _slots(doc) if p]
        if not slots:
            break
        path = draw(st.sampled_from(slots))
        parent, key = _get(doc, path[:-1]), path[-1]
        op = draw(st.sampled_from(["replace", "replace", "delete", "rename", "duplicate", "swap", "retype"]))
        value = parent[key]
        if op == "replace":
            parent[key] = copy.deepcopy(draw(st.sampled_from(HOSTILE)))  # never edit HOSTILE itself
        elif op == "delete":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["x", "", "\ud800", "name", "file", "sha256", "members"]))] = parent.pop(key)
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(value))
        elif op == "swap":
            other = draw(st.sampled_from(slots))
            try:
                o_parent = _get(doc, other[:-1])
                parent[key], o_parent[other[-1]] = copy.deepcopy(o_parent[other[-1]]), copy.deepcopy(value)
            except (KeyError, IndexError, TypeError):
                pass
        elif op == "retype":
            parent[key] = ([value] if not isinstance(value, list) else {"v": value}) if draw(st.booleans()) else \
                str(value)[:100]
        ops.append(f"{op} {'/'.join(map(str, path))[:80]}")
    return doc, ops


@st.composite
def byte_edits(draw, data: bytes, max_edits: int = 16) -> bytes:
    """``data`` with 1..max_edits random byte overwrites, insertions or deletions."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, max_edits))):
        i = draw(st.integers(0, max(len(out) - 1, 0)))
        kind = draw(st.sampled_from(["set", "insert", "delete"]))
        byte = draw(st.integers(0, 255))
        if kind == "set" and out:
            out[i] = byte
        elif kind == "insert":
            out.insert(i, byte)
        elif out:
            del out[i]
    return bytes(out)


class Tally:
    """Outcome counts of one target (printed and, with EC_FUZZ_REPORT, appended as a JSON line)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.counts: collections.Counter = collections.Counter()
        self.examples = 0  # set by targets whose outcomes are counted per part of a case (requests)

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1

    def example(self) -> None:
        self.examples += 1

    def report(self) -> None:
        line = {"target": self.target, "examples_setting": EXAMPLES,
                "cases": self.examples or sum(self.counts.values()),
                **dict(sorted(self.counts.items()))}
        print(json.dumps(line))
        path = os.environ.get("EC_FUZZ_REPORT")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
