"""Bundle verification (``verify_files``, ``read_manifest``, the digest and path checks): what the
mutation run over them found untested (docs/mutation_testing.md), each pinned here."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_committee.bundle import bundle as bundle_module
from edge_committee.bundle import read_manifest
from edge_committee.bundle.bundle import verify_files


def _onnx_files(bundle: Path) -> list[str]:
    return sorted(r for r in read_manifest(bundle)["files"] if r.endswith(".onnx"))


def test_a_removed_file_is_reported_missing_not_changed(bundle: Path):
    rel = _onnx_files(bundle)[0]
    (bundle / rel).unlink()
    problems = verify_files(bundle, read_manifest(bundle, verify=False))
    assert f"{bundle / rel}: missing (listed in manifest.json)" in problems, problems
    assert not any("checksum mismatch" in p for p in problems)


def test_a_file_that_cannot_be_read_is_never_called_intact_nor_changed(bundle: Path, monkeypatch):
    rel = _onnx_files(bundle)[0]
    real = bundle_module.sha256_file

    def unreadable(path, *a, **k):
        if Path(path) == bundle / rel:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(bundle_module, "sha256_file", unreadable)
    problems = verify_files(bundle, read_manifest(bundle, verify=False))
    assert problems == [f"{bundle / rel}: missing (listed in manifest.json)"], problems


def test_every_listed_file_is_checked_after_one_that_leaves_the_bundle(bundle: Path):
    """A listed path outside the bundle is a problem; the files listed after it are still hashed."""
    manifest = read_manifest(bundle)
    rel = _onnx_files(bundle)[-1]
    (bundle / rel).unlink()
    (bundle / rel).write_bytes(b"changed")
    files = {"../outside.onnx": "0" * 64, **manifest["files"]}  # checked first
    problems = verify_files(bundle, {**manifest, "files": files})
    assert any("'../outside.onnx'" in p and "leaves the bundle" in p for p in problems), problems
    assert f"{bundle / rel}: checksum mismatch (file changed since the bundle was built)" in problems, problems


def test_unlisted_member_files_and_added_files_are_named_in_whole_sentences(bundle: Path):
    manifest = read_manifest(bundle)
    member = manifest["members"][0]
    files = {k: v for k, v in manifest["files"].items() if k != member["file"]}
    (bundle / "notes.txt").write_text("mine")
    problems = verify_files(bundle, {**manifest, "files": files})
    assert f"{bundle / member['file']}: member {member['name']!r} file not listed" in problems, problems
    assert f"{bundle / member['file']}: not listed in manifest.json (added after the build); move it out of the " \
           "bundle" in problems, problems
    assert f"{bundle / 'notes.txt'}: not listed in manifest.json (added after the build); move it out of the " \
           "bundle" in problems, problems


def test_reading_a_missing_bundle_changes_nothing_on_disk(tmp_path: Path):
    """Only an interrupted swap (its journal beside the folder) is finished by a reader; a plain
    missing folder is one error, and no folder or lock file appears."""
    from edge_committee.errors import BundleError

    missing = tmp_path / "no" / "such" / "bundle"
    with pytest.raises(BundleError, match=r"^bundle folder not found: "):
        read_manifest(missing)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_a_manifest_and_another_schema_version_are_whole_sentences(bundle: Path, tmp_path: Path):
    import json

    from edge_committee.bundle.manifest import DIGEST_KEY, SCHEMA_VERSION, manifest_digest
    from edge_committee.errors import BundleError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError) as exc:
        read_manifest(empty)
    assert str(exc.value) == (f"{empty / 'manifest.json'}: missing; {empty} is not a bundle (build one with "
                              "edge-committee build)")
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["schema_version"] = SCHEMA_VERSION + 1
    doc[DIGEST_KEY] = manifest_digest(doc)
    (bundle / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError) as exc:
        read_manifest(bundle)
    assert str(exc.value) == (f"{bundle / 'manifest.json'}: schema_version {SCHEMA_VERSION + 1} is not supported "
                              f"(this edge_committee reads {SCHEMA_VERSION}); rebuild the bundle or upgrade "
                              "edge_committee")


@pytest.mark.parametrize("changed", [1, 2, 3])
def test_the_refusal_names_the_first_problem_and_counts_the_others(bundle: Path, changed):
    from edge_committee.errors import BundleError

    rels = _onnx_files(bundle)[:changed]
    assert len(rels) == changed
    for rel in rels:
        (bundle / rel).unlink()
        (bundle / rel).write_bytes(b"changed")
    with pytest.raises(BundleError) as exc:
        read_manifest(bundle)
    text = str(exc.value)
    assert text.startswith(f"{bundle / rels[0]}: checksum mismatch (file changed since the bundle was built)")
    assert text.endswith("built)" if changed == 1 else f"built) (and {changed - 1} more)"), text


def test_the_digest_is_the_documented_canonical_json():
    """docs/bundle.md: sha256 of the JSON with sorted keys, no whitespace, UTF-8 (not \\u escapes),
    without manifest_sha256; so key order and the digest field itself never change it."""
    import hashlib

    from edge_committee.bundle.manifest import DIGEST_KEY, canonical_json, manifest_digest

    doc = {"name": "café", "labels": ["b", "a"], "members": [{"z": 1, "a": [0.5, None]}], DIGEST_KEY: "x"}
    text = '{"labels":["b","a"],"members":[{"a":[0.5,null],"z":1}],"name":"café"}'
    assert canonical_json(doc) == text.encode("utf-8")
    assert manifest_digest(doc) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    reordered = dict(reversed(list(doc.items())))
    assert manifest_digest(reordered) == manifest_digest(doc)


def test_digest_problems_are_whole_sentences(tmp_path: Path):
    from edge_committee.bundle.manifest import DIGEST_KEY, check_digest, manifest_digest

    path = tmp_path / "manifest.json"
    doc = {"name": "b"}
    assert check_digest(path, doc) == (f"{path}: has no {DIGEST_KEY} (written by an older edge_committee, or the "
                                       "field was removed); rebuild the bundle")
    doc[DIGEST_KEY] = manifest_digest(doc)
    assert check_digest(path, doc) is None
    doc["name"] = "c"
    assert check_digest(path, doc) == (f"{path}: checksum mismatch (the manifest changed since the bundle was "
                                       "built: thresholds, labels or preprocessing may differ); rebuild the bundle")


def test_the_manifest_size_limit_and_an_unreadable_manifest(bundle: Path, monkeypatch):
    from edge_committee.bundle import manifest as manifest_module
    from edge_committee.bundle.manifest import parse_manifest
    from edge_committee.errors import BundleError

    path = bundle / "manifest.json"
    size = path.stat().st_size
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", size)
    parse_manifest(path)  # exactly at the limit: read
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", size - 1)
    with pytest.raises(BundleError) as exc:
        parse_manifest(path)
    assert str(exc.value) == f"{path}: {size} bytes is too large for a manifest (at most {size - 1})"
    monkeypatch.undo()
    path.write_bytes(b'{"name": "\xff"}')  # not UTF-8
    with pytest.raises(BundleError) as exc:
        parse_manifest(path)
    assert str(exc.value).startswith(f"{path}: cannot read it (") and "utf-8" in str(exc.value)


def _nested(levels: int) -> str:
    """A JSON object ``levels`` containers deep (the object itself is level 1)."""
    return '{"a": ' * (levels - 1) + '{"a": 1' + "}" * levels


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON ("),
    ("[1, 2]", "expected a JSON object, got list"),
    ("[" * 200_000 + "]" * 200_000, "JSON nested too deeply (not a manifest edge_committee wrote)"),
    (_nested(33), "JSON nested deeper than 32 levels (not a manifest edge_committee wrote)"),
    ('{"\\ud800' + "k" * 100 + '": 1}', "the string '\\ud800" + "k" * 59 + "' holds a lone UTF-16 surrogate"),
    ('{"name": "\\udfff' + "v" * 100 + '"}', "the string '\\udfff" + "v" * 59 + "' holds a lone UTF-16 surrogate"),
])
def test_unreadable_manifests_are_whole_sentences(tmp_path: Path, text, message):
    from edge_committee.bundle.manifest import MAX_DEPTH, parse_manifest
    from edge_committee.errors import BundleError

    assert MAX_DEPTH == 32
    path = tmp_path / "manifest.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BundleError) as exc:
        parse_manifest(path)
    assert str(exc.value).startswith(f"{path}: {message}"), str(exc.value)


def test_a_manifest_exactly_max_depth_deep_is_read(tmp_path: Path):
    from edge_committee.bundle.manifest import MAX_DEPTH, parse_manifest

    path = tmp_path / "manifest.json"
    path.write_text(_nested(MAX_DEPTH), encoding="utf-8")
    assert parse_manifest(path)["a"]["a"]


@pytest.mark.parametrize("rel, message", [
    (5, "5 is not a relative file path inside the bundle"),
    ("", "'' is not a relative file path inside the bundle"),
    ("../x.onnx", "the path '../x.onnx' leaves the bundle (absolute or '..'); a bundle only refers to its own "
                  "files: rebuild it"),
    ("/etc/passwd", "the path '/etc/passwd' leaves the bundle"),
    ("a\\b.onnx", "the path 'a\\\\b.onnx' leaves the bundle"),
    ("C:x.onnx", "the path 'C:x.onnx' leaves the bundle"),
    ("a\0b", "the path 'a\\x00b' leaves the bundle"),
    ("manifest.json", "'manifest.json' is not a file of the bundle"),
    (".", "'.' is not a file of the bundle"),
])
def test_bundle_paths_are_refused_in_whole_sentences(rel, message):
    from edge_committee.bundle.manifest import bundle_relpath
    from edge_committee.errors import BundleError

    with pytest.raises(BundleError) as exc:
        bundle_relpath(rel, "where")
    assert str(exc.value).startswith(f"where: {message}"), str(exc.value)
    assert str(bundle_relpath("members/m.onnx", "where")) == "members/m.onnx"


def test_links_out_of_the_bundle_and_member_paths_are_whole_sentences(tmp_path: Path):
    import os

    from edge_committee.bundle.manifest import check_paths, resolve_in_bundle
    from edge_committee.errors import BundleError

    root = tmp_path / "b"
    root.mkdir()
    (tmp_path / "outside.onnx").write_bytes(b"x")
    (root / "evil.onnx").symlink_to(tmp_path / "outside.onnx")
    (root / "m.onnx").write_bytes(b"m")
    base = Path(os.path.realpath(root))
    with pytest.raises(BundleError) as exc:
        resolve_in_bundle(root, "evil.onnx", "where")
    assert str(exc.value) == (f"where: 'evil.onnx' resolves to {Path(os.path.realpath(tmp_path / 'outside.onnx'))}, "
                              f"outside the bundle {base} (a symbolic link); copy the file into the bundle and "
                              "rebuild it")
    assert resolve_in_bundle(root, "m.onnx") == root / "m.onnx"
    where = f"{root / 'manifest.json'}"
    with pytest.raises(BundleError) as exc:
        check_paths(root, {"files": {"m.onnx": "0" * 64}, "members": [{"name": "m", "file": "../m.onnx"}]})
    assert str(exc.value).startswith(f"{where}: member 'm': the path '../m.onnx' leaves the bundle"), str(exc.value)
    with pytest.raises(BundleError) as exc:
        check_paths(root, {"files": {}, "members": [{"name": "m", "file": "m.onnx"}]})
    assert str(exc.value) == f"{root / 'm.onnx'}: member 'm' file not listed in manifest.json"
    with pytest.raises(BundleError) as exc:
        check_paths(root, {"files": {"evil.onnx": "0" * 64}, "members": []})
    assert str(exc.value).startswith(f"{where}: 'evil.onnx' resolves to ")
