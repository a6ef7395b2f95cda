"""Fuzz latency profile files: structural and byte mutations of a real profile, then read, check
and turn into selection costs. Outcomes: costs (finite, >= 0) or one of our errors. Case count:
``EC_FUZZ_EXAMPLES``."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_committee.bundle import read_manifest
from edge_committee.errors import EdgeCommitteeError
from edge_committee.profile.store import latency_stage_costs

from ..fuzzing import FUZZ, Tally, byte_edits, mutated

TALLY = Tally("profile")


@pytest.fixture(scope="module")
def work(_bundles, tmp_path_factory):
    root = _bundles["profiled"]
    manifest = read_manifest(root)
    entry = next(iter(manifest["profiles"].values())) if isinstance(manifest.get("profiles"), dict) else None
    path = root / entry["file"] if entry else next((root / "profiles").glob("*.json"))
    data = path.read_bytes()
    yield root, manifest, data, json.loads(data), tmp_path_factory.mktemp("fuzz-profile") / "p.json"
    TALLY.report()


@FUZZ
@given(data=st.data())
def test_profile_mutations_give_costs_or_our_errors(work, data):
    root, manifest, original, doc, target = work
    mode = data.draw(st.sampled_from(["struct", "bytes"]))
    if mode == "struct":
        new_doc, ops = data.draw(mutated(doc))
        target.write_text(json.dumps(new_doc), encoding="utf-8")
    else:
        ops = ["bytes"]
        target.write_bytes(data.draw(byte_edits(original)))
    kind = data.draw(st.sampled_from(["worst", "mean"]))
    batch = data.draw(st.sampled_from([1, 3, 4, 64]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a NumPy overflow warning is a bug as well (t3 L8)
            costs = latency_stage_costs(root, manifest, target, kind, batch)
            curves = {n: np.asarray(f(np.array([0.0, 0.5, 1.0])), np.float64) for n, f in costs.expected.items()}
    except EdgeCommitteeError:
        TALLY.add(f"{mode}: refused")
        return
    except Exception as exc:  # noqa: BLE001 - the property under test
        raise AssertionError(f"{mode} {ops}: {type(exc).__name__} outside our error types: {exc}") from exc
    for name, arr in {**curves, "per_call": np.asarray([costs.per_call], np.float64)}.items():
        assert np.all(np.isfinite(arr)) and np.all(arr >= 0), f"{mode} {ops}: {name} costs {arr!r}"
    TALLY.add(f"{mode}: costs")
