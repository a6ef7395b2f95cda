"""Sinks on hostile targets (t3 HIGH #1 R13, MEDIUM #5 R10-R12): a device node, a link or a user's
file is never replaced; a full or read-only file system is one line, complete JSON lines only."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from edge_committee.cli.main import main
from edge_committee.stream import SourceError, StreamPipeline
from edge_committee.stream.sinks.base import SinkError

SRC = "test://counter?count=40&live=0&fps=0"


def _device_like(path) -> str:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return "device node"
    except OSError:
        os.mkfifo(path)
        return "named pipe"


def test_video_sink_never_replaces_a_device_node_a_link_or_a_users_file(model, tmp_path):
    dev = tmp_path / "dev.mp4"
    what = _device_like(dev)
    mine = tmp_path / "holiday.mp4"
    mine.write_bytes(b"my video")
    link = tmp_path / "link.mp4"
    link.symlink_to(mine)
    for target, match in ((dev, what), (link, "symbolic link"), (mine, "--force")):
        before = os.lstat(target)
        with pytest.raises(SinkError, match=match):
            list(StreamPipeline(model, [SRC], [f"video:{target}"]))
        after = os.lstat(target)
        assert (stat.S_IFMT(after.st_mode), after.st_ino) == (stat.S_IFMT(before.st_mode), before.st_ino)
    assert mine.read_bytes() == b"my video"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_run_force_replaces_a_users_video_but_never_a_device(tiny_bundle, tmp_path, capsys):
    mine = tmp_path / "old.mp4"
    mine.write_bytes(b"old")
    base = ["run", str(tiny_bundle), "--source", SRC, "-q", "--threads", "1"]
    assert main(base + ["--sink", f"video:{mine}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists and was not written by edge_committee" in err[0], err
    assert mine.read_bytes() == b"old"
    assert main(base + ["--sink", f"video:{mine}", "--force"]) == 0
    assert mine.stat().st_size > 100 and mine.read_bytes() != b"old"
    dev = tmp_path / "dev.mp4"
    what = _device_like(dev)
    capsys.readouterr()
    assert main(base + ["--sink", f"video:{dev}", "--force"]) == 1
    assert what in capsys.readouterr().err
    assert not stat.S_ISREG(os.lstat(dev).st_mode)


def test_jsonl_disk_full_is_one_line_and_leaves_complete_lines(model, tmp_path, monkeypatch):
    """A write that the disk cuts short: the partial line is removed and the error is one line."""
    out = tmp_path / "r.jsonl"
    real_write = os.write
    budget = {"bytes": 3000}

    def short_write(fd, data):  # a file system that fills up after 3000 bytes, mid-line
        if fd > 2 and os.path.realpath(f"/proc/self/fd/{fd}") == str(out):
            if budget["bytes"] <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            n = real_write(fd, bytes(data[: budget["bytes"]]))
            budget["bytes"] -= n
            return n
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short_write)
    with pytest.raises(SinkError, match=r"sink jsonl:.*r\.jsonl: cannot write \(No space left on device\); \d+ "
                                        r"complete lines were written"):
        list(StreamPipeline(model, [SRC], [f"jsonl:{out}"]))
    text = out.read_text()
    assert text.endswith("\n") and len(text) <= 3000
    assert all(json.loads(line) for line in text.splitlines())


def test_jsonl_on_dev_full_and_a_read_only_video_folder_are_one_line_each(tiny_bundle, tmp_path, capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    base = ["run", str(tiny_bundle), "--source", SRC, "-q", "--threads", "1"]
    assert main(base + ["--sink", "jsonl:/dev/full"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [e for e in err if e.startswith("error: ")] and "No space left on device" in err[0], err
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    # a read-only folder (root ignores permission bits: simulate with a video file system error instead)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):
        pytest.skip("running as root: a read-only folder is still writable")
    assert main(base + ["--sink", f"video:{ro / 'o.mp4'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sink video:" in err[0] and "cannot write" in err[0], err


def test_video_sink_write_error_is_one_line_and_removes_the_temporary(model, tmp_path, monkeypatch):
    from edge_committee.stream.sinks import video

    real = video._Writer.add
    calls = {"n": 0}

    def failing_add(self, av, rgb, t, pts=None):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, av, rgb, t, pts)

    monkeypatch.setattr(video._Writer, "add", failing_add)
    out, vid = tmp_path / "r.jsonl", tmp_path / "o.mp4"
    with pytest.raises(SourceError, match=r"sink video:.*o\.mp4: cannot write \(No space left on device\)"):
        list(StreamPipeline(model, [SRC], [f"jsonl:{out}", f"video:{vid}"]))
    assert not vid.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[-1]["event"] == "summary"  # the other sink was closed normally


def _frames_until_the_cut(path) -> int:
    """Frames a player decodes from a file whose end may be cut off mid-fragment."""
    import av

    frames = 0
    with av.open(str(path)) as container:
        try:
            for packet in container.demux(video=0):
                frames += len(packet.decode())
        except av.error.FFmpegError:
            pass  # the cut: a player stops here too
    return frames


def test_sigkill_keeps_the_video_recorded_so_far(tiny_bundle, tmp_path):
    """t3 LOW #17 (R17): a SIGKILL lost the whole recording and left a hidden temporary file."""
    import signal
    import subprocess
    import sys
    import time

    from stream_helpers import decode_all

    out = tmp_path / "k.mp4"
    partial = tmp_path / "k.partial.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "edge_committee", "run", str(tiny_bundle), "--source",
                             "test://counter?fps=50", "--sink", f"video:{out}", "--sink", "jsonl:/dev/null", "-q",
                             "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if partial.exists() and partial.stat().st_size > 6_000:  # a few fragments written
                break
            time.sleep(0.2)
        assert proc.poll() is None, "run ended by itself"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not out.exists()
    assert _frames_until_the_cut(partial) >= 25  # the fragments written before the kill play
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # a second run never touches the first's partial file
    assert main(["run", str(tiny_bundle), "--source", SRC, "-q", "--threads", "1", "--sink", f"video:{out}"]) == 0
    assert len(decode_all(out)) == 40 and partial.exists()
