"""The leftovers of t3 LOW #16 (L6, L8): a bad profile inside the bundle is named by the user's path,
never by the staging copy ``select`` edits in (gone when the message is read); a huge but finite
timing is refused in one line instead of leaking NumPy overflow warnings."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from edge_committee.bundle import read_manifest
from edge_committee.bundle.bundle import edit_bundle
from edge_committee.cli.main import main


def _edit_profile(bundle: Path, edit) -> str:
    """Edit the bundle's profile in place, re-listed and re-checksummed (so only its content is wrong)."""
    entry = next(iter(read_manifest(bundle)["profiles"].values()))
    with edit_bundle(bundle) as ed:
        path = ed.path / entry["file"]
        doc = json.loads(path.read_text(encoding="utf-8"))
        edit(doc)
        path.write_text(json.dumps(doc), encoding="utf-8")
        ed.add(entry["file"])
    return entry["file"]


def _first_member(doc: dict) -> dict:
    return next(iter(doc["members"].values()))


@pytest.mark.parametrize("edit, message", [
    (lambda d: _first_member(d)["batches"]["1"].update(median_ms=-1.0), "is less than or equal to the minimum of 0"),
    (lambda d: _first_member(d)["batches"]["1"].update(median_ms="fast"), "'fast' is not of type 'number'"),
], ids=["negative", "text"])
def test_a_bad_profile_in_the_bundle_is_named_by_the_users_path(profiled_bundle: Path, capsys, edit, message):
    rel = _edit_profile(profiled_bundle, edit)
    capsys.readouterr()
    assert main(["select", str(profiled_bundle), "--budget-ms", "100", "--threads", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert str(profiled_bundle / rel) in err and ".ec-stage" not in err, err


@pytest.mark.parametrize("field", ["p90_ms", "median_ms", "mean_ms"])
def test_a_timing_too_large_to_add_is_one_line_without_warnings(profiled_bundle: Path, capsys, field):
    rel = _edit_profile(profiled_bundle, lambda d: [t.update({field: 1e308}) for m in d["members"].values()
                                                    for t in m["batches"].values()])
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's overflow RuntimeWarning was printed before the answer
        rc = main(["select", str(profiled_bundle), "--budget-ms", "100", "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0 and "1e+308" in err and str(profiled_bundle / rel) in err, err
