"""Finding 1 (HIGH): ``build --out`` never deletes a folder that is not one of our bundles."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle_cases import one_line_error

from edge_committee.bundle import read_manifest
from edge_committee.errors import BundleError


def _webapp(root: Path) -> Path:
    """A folder of another program that happens to hold a manifest.json (probe case X1)."""
    (root / "src").mkdir(parents=True)
    (root / "manifest.json").write_text('{"name": "My App", "start_url": "/", "icons": []}\n')
    (root / "src" / "app.js").write_text("console.log('hello')\n")
    (root / "thesis.tex").write_text("\\documentclass{article}\n")
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_refuses_a_folder_with_a_foreign_manifest(tiny_committee: Path, cache_dir: Path, cli):
    out = _webapp(tiny_committee.parent / "webapp")
    before = _tree(out)
    line = one_line_error(*cli("build", tiny_committee, "--out", out, "-q", "--cache-dir", cache_dir)[::2])
    assert "webapp" in line and "not an edge_committee bundle" in line and "--force" in line
    assert _tree(out) == before  # nothing of the user's deleted or changed
    assert not cache_dir.exists()  # refused before any member ran
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".webapp.") and p.is_dir()]


def test_build_refuses_a_bundle_holding_files_of_the_user(built_bundle: Path, tiny_committee: Path,
                                                         cache_dir: Path, cli):
    (built_bundle / "notes.txt").write_text("my notes\n")
    line = one_line_error(*cli("build", tiny_committee, "--out", built_bundle, "-q", "--cache-dir",
                               cache_dir)[::2])
    assert "notes.txt" in line and "--force" in line
    assert (built_bundle / "notes.txt").read_text() == "my notes\n"


def test_force_replaces_the_folder(tiny_committee: Path, cache_dir: Path, cli):
    import edge_committee as ec

    out = _webapp(tiny_committee.parent / "webapp")
    with pytest.raises(BundleError, match="--force"):
        ec.build(tiny_committee, out, cache_dir=cache_dir, log=lambda s: None)
    ec.build(tiny_committee, out, cache_dir=cache_dir, log=lambda s: None, force=True)
    assert not (out / "thesis.tex").exists()
    read_manifest(out)  # a valid bundle now
    code, _, err = cli("build", tiny_committee, "--out", out, "-q", "--cache-dir", cache_dir)
    assert code == 0, err  # our own bundle is replaced without --force
