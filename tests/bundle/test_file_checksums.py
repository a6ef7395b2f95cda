"""The bundle's per-file checksums, tested where the bundle lives (t3 audit F12: a vacuous compare
was caught only by a pipeline test). Every listed file, one flipped byte or a same-size swap each."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_committee.bundle import read_manifest
from edge_committee.bundle.bundle import verify_files
from edge_committee.errors import BundleError
from edge_committee.runtime import CascadeModel


def _listed(bundle: Path) -> list[str]:
    return sorted(read_manifest(bundle)["files"])


def test_every_listed_file_is_checked(bundle: Path):
    names = _listed(bundle)
    assert any(n.endswith(".onnx") for n in names) and len(names) >= 3
    for rel in names:
        path = bundle / rel
        original = path.read_bytes()
        changed = bytearray(original)
        changed[len(changed) // 2] ^= 0x01  # one bit, same size, same name
        path.unlink()  # a new inode: copies in the session may share files
        path.write_bytes(bytes(changed))
        with pytest.raises(BundleError, match=rf"{rel}: checksum mismatch"):
            read_manifest(bundle)
        with pytest.raises(BundleError, match="checksum mismatch"):
            CascadeModel(bundle).__enter__()
        path.unlink()
        path.write_bytes(original)
    assert verify_files(bundle, read_manifest(bundle, verify=False)) == []


def test_two_member_files_swapped_are_both_named(bundle: Path):
    manifest = read_manifest(bundle)
    a, b = [m["file"] for m in manifest["members"][:2]]
    pa, pb = bundle / a, bundle / b
    da, db = pa.read_bytes(), pb.read_bytes()
    pa.unlink()
    pb.unlink()
    pa.write_bytes(db)
    pb.write_bytes(da)
    problems = verify_files(bundle, read_manifest(bundle, verify=False))
    assert sorted(p.split(":")[0] for p in problems) == sorted([str(pa), str(pb)])
    assert all("checksum mismatch" in p for p in problems)


def test_without_verify_the_files_are_not_hashed(bundle: Path):
    rel = next(r for r in _listed(bundle) if r.endswith(".onnx"))
    (bundle / rel).unlink()
    (bundle / rel).write_bytes(b"garbage")
    read_manifest(bundle, verify=False)  # the schema and paths only (the documented fast path)
    with pytest.raises(BundleError, match="checksum mismatch"):
        read_manifest(bundle)
