"""Findings 2 and 3 (HIGH): the manifest is checksummed; no manifest path leaves the bundle."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from bundle_cases import one_line_error, tamper

import edge_committee as ec
from edge_committee.bundle import read_manifest
from edge_committee.errors import BundleError

_OPENED: list[str] = []
_WATCH = {"on": False}


def _audit(event: str, args) -> None:
    if _WATCH["on"] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one only records while _WATCH is on


@pytest.fixture
def opened():
    """Paths opened by Python code while the test runs (sys.audit 'open' events)."""
    _OPENED.clear()
    _WATCH["on"] = True
    yield _OPENED
    _WATCH["on"] = False


def _edit_text(bundle: Path, old: str, new: str, count: int = 1) -> None:
    path = bundle / "manifest.json"
    text = path.read_text()
    assert text.count(old) >= 1, old
    path.write_text(text.replace(old, new, count))


@pytest.mark.parametrize("what", ["threshold", "label", "mean"])
def test_a_changed_manifest_is_detected(bundle: Path, cli, what):
    m = json.loads((bundle / "manifest.json").read_text())
    if what == "threshold":  # probe B3: one byte of the threshold
        t = json.dumps(m["cascade"]["thresholds"][0])
        _edit_text(bundle, t, "0.0" + t[3:] if t.startswith("0.") else "-1.0")
    elif what == "label":  # probe B4
        _edit_text(bundle, json.dumps(m["labels"][1]), json.dumps(m["labels"][1] + "h"), -1)
    else:
        _edit_text(bundle, '0.5\n        ],\n        "std"', '0.7\n        ],\n        "std"')
    code, out, err = cli("inspect", bundle)
    assert code == 1 and "checksums match" not in out
    assert "manifest.json: checksum mismatch" in err
    with pytest.raises(BundleError, match="manifest.json: checksum mismatch"):
        ec.load(bundle)
    line = one_line_error(*cli("predict", bundle, bundle.parent / "batch.npy")[::2])
    assert "manifest.json" in line


def test_a_manifest_without_its_checksum_is_refused(bundle: Path, cli):
    tamper(bundle, lambda m: m.pop("manifest_sha256"))
    with pytest.raises(BundleError, match="has no manifest_sha256"):
        read_manifest(bundle)
    assert cli("inspect", bundle)[0] == 1


def test_edit_bundle_re_signs_the_manifest(bundle: Path):
    from edge_committee._util import write_bytes_atomic
    from edge_committee.bundle import edit_bundle

    with edit_bundle(bundle) as ed:
        write_bytes_atomic(ed.add("profiles/latency.json"), b'{"unit": "ms", "members": {}}\n')
        ed.manifest["profiles"] = ["profiles/latency.json"]
    m = read_manifest(bundle)  # verifies the new digest and the new file
    assert "profiles/latency.json" in m["files"] and m["profiles"] == ["profiles/latency.json"]


def _outside_copy(bundle: Path, member_file: str) -> Path:
    outside = bundle.parent / "outside" / "evil.onnx"
    outside.parent.mkdir()
    shutil.copy(bundle / member_file, outside)
    return outside


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "files_only"])
def test_paths_that_leave_the_bundle_are_refused_before_reading(bundle: Path, cli, opened, how):
    m = read_manifest(bundle)
    first = next(x for x in m["members"] if x["name"] == m["cascade"]["members"][0])
    outside = _outside_copy(bundle, first["file"])
    if how == "symlink":  # probe B30, now refused: the bundle would depend on a file outside it
        (bundle / first["file"]).unlink()
        (bundle / first["file"]).symlink_to(outside)
        bad = first["file"]
    else:
        bad = {"dotdot": os.path.relpath(outside, bundle), "absolute": str(outside), "files_only": "/etc/hostname"}[how]

        def point(man):
            man["files"][bad] = man["files"].get(first["file"])
            if how != "files_only":  # probe B11/B12: the member runs the outside file; B13: inspect hashes it
                entry = next(x for x in man["members"] if x["name"] == first["name"])
                entry["file"] = bad
                del man["files"][first["file"]]

        tamper(bundle, point, resign=True)  # checksums recomputed, as anyone who can write the bundle can
    opened.clear()  # the setup above read the outside file on purpose
    line = one_line_error(*cli("inspect", bundle)[::2])
    assert repr(bad) in line and ("leaves the bundle" in line or "outside the bundle" in line)
    for verify in (True, False):
        with pytest.raises(BundleError, match="bundle"):
            ec.load(bundle, verify=verify)
    one_line_error(*cli("predict", bundle, bundle.parent / "batch.npy")[::2])
    one_line_error(*cli("select", bundle, "--budget-macs", "largest")[::2])  # probe B14: was a KeyError traceback
    assert [p for p in opened if "outside" in p or p == "/etc/hostname"] == []


@pytest.mark.parametrize("rel", ["../outside.txt", "/tmp/x.txt", "manifest.json"])
def test_edit_bundle_refuses_paths_outside_the_bundle(bundle: Path, rel: str):
    from edge_committee.bundle import edit_bundle

    before = (bundle / "manifest.json").read_bytes()
    for op in ("add", "remove"):
        with pytest.raises(BundleError, match="bundle"):
            with edit_bundle(bundle) as ed:
                getattr(ed, op)(rel)
    assert (bundle / "manifest.json").read_bytes() == before
