"""``export-onnx --out``: never onto a device node, a link, a folder, a bundle's file or a user's file.

HIGH #1 / MEDIUM #4 of the t3 probe: the atomic writer replaced ``/dev/full`` with a regular file,
and ``--out <bundle>/members/m.onnx`` overwrote a member outside the bundle's lock.
"""

from __future__ import annotations

import os
import stat

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from .test_cascade_onnx import tiny_bundle  # noqa: E402


def device_like(path) -> str:
    """A character device (a /dev/null twin) where the machine allows mknod, else a FIFO."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return "char"
    except (PermissionError, OSError):
        os.mkfifo(path)
        return "fifo"


def _run(capsys, argv):
    from edge_committee.cli.main import main

    rc = main(argv)
    return rc, capsys.readouterr().err.strip()


def _one_line(rc, err, match):
    assert rc == 1 and len(err.splitlines()) == 1 and err.startswith("error: ") and match in err, (rc, err)


def test_device_nodes_fifos_links_and_folders_are_never_replaced(tmp_path, capsys):
    bundle, _ = tiny_bundle(tmp_path)
    base = ["export-onnx", str(bundle), "--source-size", "12x12", "--force"]  # --force does not unlock these
    dev = tmp_path / "dev.onnx"
    kind = device_like(dev)
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    target = tmp_path / "user.txt"
    target.write_text("mine")
    link = tmp_path / "link.onnx"
    link.symlink_to(target)
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "thesis.tex").write_text("x")
    for path, what in ((dev, "device node" if kind == "char" else "named pipe"), (fifo, "named pipe"),
                       (link, "symbolic link"), (folder, "a folder"), (bundle, "a folder")):
        before = os.lstat(path)
        rc, err = _run(capsys, base + ["--out", str(path)])
        _one_line(rc, err, what)
        after = os.lstat(path)
        assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    assert target.read_text() == "mine" and (folder / "thesis.tex").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_users_file_is_replaced_only_with_force_an_earlier_export_always(tmp_path, capsys):
    bundle, _ = tiny_bundle(tmp_path)
    base = ["export-onnx", str(bundle), "--source-size", "12x12"]
    notes = tmp_path / "notes.onnx"
    notes.write_text("my notes")
    rc, err = _run(capsys, base + ["--out", str(notes)])
    _one_line(rc, err, "exists and was not written by edge_committee")
    assert "--force" in err and notes.read_text() == "my notes"
    out = tmp_path / "c.onnx"
    assert _run(capsys, base + ["--out", str(out)])[0] == 0
    assert _run(capsys, base + ["--out", str(out), "--form", "mask"])[0] == 0  # our own file: replaced
    assert _run(capsys, base + ["--out", str(notes), "--force"])[0] == 0
    assert notes.read_bytes()[:2] != b"my"


@pytest.mark.parametrize("rel", ["members/m0.onnx", "manifest.json", "extra.onnx", "fused/new.onnx"])
def test_out_inside_a_bundle_is_refused_and_the_bundle_unchanged(tmp_path, capsys, rel):
    from edge_committee._util import sha256_file
    from edge_committee.bundle import read_manifest

    bundle, _ = tiny_bundle(tmp_path)
    before = {p.relative_to(bundle).as_posix(): sha256_file(p) for p in bundle.rglob("*") if p.is_file()}
    rc, err = _run(capsys, ["export-onnx", str(bundle), "--source-size", "12x12", "--force", "--out",
                            str(bundle / rel)])
    _one_line(rc, err, "is inside the bundle")
    assert "--into-bundle" in err
    after = {p.relative_to(bundle).as_posix(): sha256_file(p) for p in bundle.rglob("*") if p.is_file()}
    assert after == before
    read_manifest(bundle)  # still valid


def test_committee_flags_are_validated(tmp_path, capsys):
    bundle, _ = tiny_bundle(tmp_path)
    base = ["export-onnx", str(bundle), "--source-size", "12x12", "--out", str(tmp_path / "c.onnx")]
    for extra, match in ((["--members", "m0,m1", "--thresholds", "nan"], "not a finite number"),
                         (["--members", "m0,m1", "--thresholds", "inf"], "not a finite number"),
                         (["--members", "m0,m0", "--thresholds", "0.5"], "appears twice"),
                         (["--members", ""], "an empty member name"),
                         (["--members", "m0,,m1"], "an empty member name")):
        _one_line(*_run(capsys, base + extra), match)
    assert not (tmp_path / "c.onnx").exists()
