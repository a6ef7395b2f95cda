"""The one atomic-write helper every output goes through (t3 HIGH #1): it never replaces a device
node, FIFO, socket, folder or symbolic link, checked before writing and again before the rename."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from edge_committee._util import atomic_path, check_output_file, write_bytes_atomic
from edge_committee.errors import EdgeCommitteeError, OutputError


def _targets(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    regular = tmp_path / "regular.txt"
    regular.write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(regular)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    sock = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    return s, {fifo: "named pipe", folder: "a folder", link: "symbolic link", dangling: "symbolic link",
               sock: "a socket"}


def test_non_regular_targets_are_refused_and_left_as_they_are(tmp_path):
    s, targets = _targets(tmp_path)
    try:
        for path, what in targets.items():
            before = os.lstat(path)
            with pytest.raises(OutputError, match=what):
                write_bytes_atomic(path, b"data")
            after = os.lstat(path)
            assert (stat.S_IFMT(after.st_mode), after.st_ino) == (stat.S_IFMT(before.st_mode), before.st_ino)
    finally:
        s.close()
    assert (tmp_path / "regular.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert issubclass(OutputError, EdgeCommitteeError)  # the CLI prints it as one line


def test_a_target_turned_into_a_fifo_during_the_write_is_refused_at_the_rename(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(OutputError, match="named pipe"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"data")
            os.mkfifo(target)
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_check_output_file_replaces_only_ours_or_with_force(tmp_path):
    mine = tmp_path / "a.onnx"
    mine.write_text("user")
    with pytest.raises(OutputError, match="--force"):
        check_output_file(mine)
    assert check_output_file(mine, force=True) == mine
    assert check_output_file(mine, ours=lambda p: p.read_text() == "user") == mine
    with pytest.raises(OutputError):
        check_output_file(mine, ours=lambda p: (_ for _ in ()).throw(ValueError("unreadable")))
    assert check_output_file(tmp_path / "new.onnx") == tmp_path / "new.onnx"
    write_bytes_atomic(mine, b"new")
    assert mine.read_bytes() == b"new" and stat.S_IMODE(mine.stat().st_mode) == 0o644
