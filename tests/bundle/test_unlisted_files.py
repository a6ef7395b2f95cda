"""Finding 16: files the manifest does not list are reported, and a re-select never lists them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edge_committee.bundle import read_manifest, verify_files


def _add_strays(bundle: Path) -> list[str]:
    m = read_manifest(bundle)
    shutil.copy(bundle / m["members"][0]["file"], bundle / "members" / "evil.onnx")
    (bundle / "members" / "phi9.fp32.onnx").write_bytes(b"x")
    (bundle / ".hidden").write_text("hidden\n")
    return ["members/evil.onnx", "members/phi9.fp32.onnx", ".hidden"]


def test_inspect_reports_unlisted_files(bundle: Path, cli):
    strays = _add_strays(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    problems = verify_files(bundle, manifest)
    for rel in strays:
        assert any(str(bundle / rel) in p and "not listed" in p for p in problems), (rel, problems)
    code, out, err = cli("inspect", bundle)
    assert code == 1 and "checksums match" not in out
    assert all(rel in err for rel in strays)


def test_reselect_never_lists_unlisted_files(bundle: Path, cli):
    listed = set(read_manifest(bundle)["files"])
    _add_strays(bundle)
    code, _, err = cli("select", bundle, "--budget-macs", "largest")
    assert code == 1 and "not listed" in err  # refused: the bundle is not as it was built
    assert set(json.loads((bundle / "manifest.json").read_text())["files"]) == listed
    import pytest

    from edge_committee.bundle import edit_bundle
    from edge_committee.errors import BundleError

    with pytest.raises(BundleError, match="does not list"):  # checksums skipped: still neither listed nor deleted
        with edit_bundle(bundle, verify=False) as ed:
            ed.manifest["note"] = "edited"
    assert set(json.loads((bundle / "manifest.json").read_text())["files"]) == listed
    assert (bundle / "members" / "evil.onnx").exists()
