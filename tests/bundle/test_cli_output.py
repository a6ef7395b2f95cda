"""CLI output and signals: strict JSON (18), the non-finite flag (19), control characters escaped (23),
SIGTERM like Ctrl-C (17), MemoryError as one line (15)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bundle_cases import one_line_error

from edge_committee._util import write_bytes_atomic
from edge_committee.bundle import edit_bundle, read_manifest


def _nan_member(path: Path) -> bytes:
    """The ONNX at ``path`` with NaN added to its logits (probe P9: a member gone bad)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    out = model.graph.output[0].name
    model.graph.node[-1].output[0] = out + "_raw"
    model.graph.initializer.append(numpy_helper.from_array(np.array([np.nan], np.float32), "nan_const"))
    model.graph.node.append(helper.make_node("Add", [out + "_raw", "nan_const"], [out]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _with_cascade(bundle: Path, members: list[str], nan_first: bool) -> None:
    m = read_manifest(bundle)
    by_name = {x["name"]: x for x in m["members"]}
    with edit_bundle(bundle) as ed:
        if nan_first:
            rel = by_name[members[0]]["file"]
            write_bytes_atomic(ed.add(rel), _nan_member(bundle / rel))
        ed.manifest["cascade"].update(members=members, thresholds=[0.5] * (len(members) - 1),
                                      kind="cascade" if len(members) > 1 else "single")


def _strict_rows(out: str) -> list[dict]:
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return [json.loads(line, parse_constant=refuse) for line in out.splitlines()]


def test_predict_json_is_strict_json(bundle: Path, cli):
    name = read_manifest(bundle)["members"][0]["name"]
    _with_cascade(bundle, [name], nan_first=True)  # probe P11/P12: nothing finite, confidence NaN
    code, out, err = cli("predict", bundle, bundle.parent / "batch.npy", "--json")
    assert code == 0, err
    rows = _strict_rows(out)
    assert len(rows) == 8
    assert all(r["confidence"] is None and r["class"] == -1 and r["flag"] for r in rows)


def test_predict_shows_the_flag_and_undeflated_confidence(bundle: Path, cli, tmp_path: Path):
    """Probe P13: after a NaN stage, the mean is over the stages that contributed."""
    names = [x["name"] for x in read_manifest(bundle)["members"]]
    alone = tmp_path / "alone"
    import shutil

    shutil.copytree(bundle, alone)
    _with_cascade(alone, [names[-1]], nan_first=False)
    _with_cascade(bundle, [names[0], names[-1]], nan_first=True)
    batch = bundle.parent / "batch.npy"
    ref = _strict_rows(cli("predict", alone, batch, "--json")[1])
    rows = _strict_rows(cli("predict", bundle, batch, "--json")[1])
    assert [r["flag"] for r in rows] == [True] * 8 and [r["flag"] for r in ref] == [False] * 8
    assert [r["class"] for r in rows] == [r["class"] for r in ref]
    assert [r["exit_stage"] for r in rows] == [1] * 8
    for r, q in zip(rows, ref):
        assert math.isclose(r["confidence"], q["confidence"], abs_tol=1e-6)  # not halved
    text = cli("predict", bundle, batch)[1].splitlines()
    assert len(text) == 8 and all("non-finite" in line for line in text)
    assert not any("non-finite" in line for line in cli("predict", alone, batch)[1].splitlines())


def test_control_characters_are_escaped(bundle: Path, cli):
    """Probe B32: escape sequences in a name must not reach the terminal raw."""
    evil = bundle.parent / "\x1b]0;owned\x07\x1b[2J.npy"
    os.replace(bundle.parent / "batch.npy", evil)
    code, out, err = cli("predict", bundle, evil)
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;owned\\x07\\x1b[2J.npy" in out
    missing = bundle.parent / "\x1b[31mmissing.png"
    line = one_line_error(*cli("predict", bundle, missing)[::2])
    assert "\x1b" not in line and "\\x1b[31mmissing.png" in line


def test_memory_error_is_one_line(bundle: Path, cli, monkeypatch):
    from edge_committee.cli import predict

    def exhausted(paths):
        raise MemoryError()

    monkeypatch.setattr(predict, "read_inputs", exhausted)
    line = one_line_error(*cli("predict", bundle, bundle.parent / "batch.npy")[::2])
    assert "out of memory" in line


_SLOW_BUILD = """
import sys, time
from pathlib import Path
import edge_committee.member_stages as p
ready = Path(sys.argv[1])
real = p.build_member
def slow(*a, **k):
    out = real(*a, **k)
    ready.touch()
    time.sleep(60)
    return out
p.build_member = slow
from edge_committee.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def test_sigterm_removes_the_staging_folder(tiny_committee: Path, cache_dir: Path):
    """Probe I5: SIGTERM left .DIR.<rand>/ behind and exited by the signal, without a word."""
    ready, out = tiny_committee.parent / "ready", tiny_committee.parent / "K2"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_BUILD, str(ready), "build", str(tiny_committee), "--out",
                             str(out), "-q", "--cache-dir", str(cache_dir)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "build never reached a member"
    assert [p for p in out.parent.iterdir() if p.name.startswith(".K2.")]  # staging exists mid-build
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 143, err
    assert err.strip() == "terminated", err
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".K2.")]


@pytest.mark.parametrize("argv", [["inspect", "--json"]])
def test_inspect_json_is_strict(bundle: Path, cli, argv):
    from bundle_cases import tamper

    tamper(bundle, lambda m: m["cascade"].update(search_eps_accuracy=float("nan")), resign=True)
    code, out, err = cli(argv[0], bundle, *argv[1:])
    assert code == 0, err
    doc = json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert doc["cascade"]["search_eps_accuracy"] is None


def test_predict_member_runs_one_member_alone(bundle: Path, cli):
    """`predict --member NAME`: that member's own answer, with no copy of the bundle to make."""
    from edge_committee.backend.onnxrt.runner import OnnxrtRunner
    from edge_committee.spec.preprocess import Preprocessing

    names = [x["name"] for x in read_manifest(bundle)["members"]]
    name = names[-1]
    before = sorted(p.name for p in bundle.parent.iterdir())
    code, out, err = cli("predict", bundle, bundle.parent / "batch.npy", "--json", "--member", name)
    assert code == 0, err
    rows = _strict_rows(out)
    assert {r["exit_member"] for r in rows} == {name} and {r["exit_stage"] for r in rows} == {0}
    entry = next(x for x in read_manifest(bundle)["members"] if x["name"] == name)
    pp = Preprocessing.from_dict(entry["preprocessing"])
    with OnnxrtRunner(bundle / entry["file"], threads=1) as runner:  # the member's own logits decide
        want = np.argmax(runner.infer(pp(np.load(bundle.parent / "batch.npy"))), 1).tolist()
    assert [r["class"] for r in rows] == want
    assert sorted(p.name for p in bundle.parent.iterdir()) == before  # its view was removed
    code, out, err = cli("predict", bundle, bundle.parent / "batch.npy", "--member", "nope")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "--member 'nope'" in err and names[0] in err
