"""edit_bundle hashes only what the edit wrote: files verified on entry keep their digests."""

from __future__ import annotations

from edge_committee._util import write_bytes_atomic
from edge_committee.bundle import bundle as B
from edge_committee.bundle import edit_bundle, read_manifest


def test_an_edit_hashes_only_the_files_it_wrote(bundle, monkeypatch):
    before = read_manifest(bundle)
    hashed = []
    real = B.sha256_file
    monkeypatch.setattr(B, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    with edit_bundle(bundle) as ed:
        hashed.clear()  # read_manifest's verification hashes every file on entry: that is expected
        write_bytes_atomic(ed.add("notes/extra.txt"), b"new file")
        write_bytes_atomic(ed.path / "report.md", b"rewritten report\n")
    assert sorted(hashed) == ["extra.txt", "report.md"]
    after = read_manifest(bundle)  # every digest, reused or new, still verifies
    assert after["files"]["report.md"] != before["files"]["report.md"]
    unchanged = set(before["files"]) - {"report.md"}
    assert {k: after["files"][k] for k in unchanged} == {k: before["files"][k] for k in unchanged}


def test_without_verification_every_file_is_hashed_again(bundle, monkeypatch):
    hashed = []
    real = B.sha256_file
    monkeypatch.setattr(B, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    with edit_bundle(bundle, verify=False) as ed:
        hashed.clear()
    assert len(hashed) == len(read_manifest(bundle)["files"])
