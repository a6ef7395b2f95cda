"""export-triton into a repository that holds other models (t3 HIGH #2) and the exported models'
own integrity check at load (t3 MEDIUM #7), without a server: the check is called as Triton would."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from edge_committee.cli.main import main
from edge_committee.errors import EdgeCommitteeError
from edge_committee.serve.triton.export import MARKER, export_triton
from edge_committee.serve.triton.integrity import MODEL_MARKER, IntegrityError, verify_model


def _user_model(repo: Path) -> dict[str, bytes]:
    """A user's own model and a README beside our export; returns their bytes."""
    (repo / "resnet50" / "1").mkdir(parents=True)
    (repo / "resnet50" / "config.pbtxt").write_text('name: "resnet50"\nbackend: "onnxruntime"\n')
    (repo / "resnet50" / "1" / "model.onnx").write_bytes(b"\x08\x07user weights")
    (repo / "README.txt").write_text("our team's models")
    return _snapshot(repo, ("resnet50", "README.txt"))


def _snapshot(repo: Path, names) -> dict[str, bytes]:
    out = {}
    for name in names:
        p = repo / name
        for f in ([p] if p.is_file() else sorted(p.rglob("*"))):
            if f.is_file():
                out[f.relative_to(repo).as_posix()] = f.read_bytes()
    return out


def test_reexport_replaces_only_our_models_and_keeps_the_users(tiny_cascade: Path, tmp_path: Path):
    repo = tmp_path / "repo"
    first = export_triton(tiny_cascade, repo, singles=["large"])
    theirs = _user_model(repo)
    second = export_triton(tiny_cascade, repo, member_backend="python-ort")  # no singles this time
    assert _snapshot(repo, ("resnet50", "README.txt")) == theirs
    assert not (repo / "tiny.large.alone").exists()  # ours, no longer exported: removed
    assert (repo / "tiny.small/1/model.py").is_file()  # replaced by the python-ort member
    assert json.loads((repo / MARKER).read_text())["member_backend"] == "python-ort"
    assert set(p.name for p in repo.iterdir()) == {"resnet50", "README.txt", MARKER, second.cascade_model,
                                                   *second.member_models.values()}
    assert first.cascade_model == second.cascade_model
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and "stage" in p.name] == []


def test_a_foreign_folder_is_refused_then_force_adds_beside_it(tiny_cascade: Path, tmp_path: Path, capsys):
    repo = tmp_path / "triton"
    repo.mkdir()
    theirs = _user_model(repo)
    assert main(["export-triton", str(tiny_cascade), "--out", str(repo)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an exported repository" in err[0] and "--force" in err[0], err
    assert _snapshot(repo, ("resnet50", "README.txt")) == theirs and len(list(repo.iterdir())) == 2
    assert main(["export-triton", str(tiny_cascade), "--out", str(repo), "--force"]) == 0
    assert _snapshot(repo, ("resnet50", "README.txt")) == theirs
    assert (repo / "tiny" / MODEL_MARKER).is_file() and (repo / MARKER).is_file()


def test_a_users_model_with_one_of_our_names_is_not_replaced(tiny_cascade: Path, tmp_path: Path):
    repo = tmp_path / "repo"
    export_triton(tiny_cascade, repo)
    theirs = _user_model(repo)
    (repo / "tiny.large.alone" / "1").mkdir(parents=True)  # the user's folder, named like one of ours
    (repo / "tiny.large.alone" / "config.pbtxt").write_text("mine")
    with pytest.raises(EdgeCommitteeError, match=r"tiny\.large\.alone exists and was not written by export-triton"):
        export_triton(tiny_cascade, repo, singles=["large"])
    assert (repo / "tiny.large.alone" / "config.pbtxt").read_text() == "mine"
    assert _snapshot(repo, ("resnet50", "README.txt")) == theirs


def _load_as_triton(model_dir: Path, cls):
    """Call ``initialize`` as Triton's Python backend does (with a stub pb_utils module)."""
    stub = types.ModuleType("triton_python_backend_utils")
    stub.PreferredMemory = None
    sys.modules.setdefault("triton_python_backend_utils", stub)
    config = json.dumps({"name": model_dir.name, "input": [{"name": "input"}], "output": [{"name": "logits"}],
                         "parameters": {}})
    model = cls()
    model.initialize({"model_repository": str(model_dir), "model_version": "1", "model_config": config})
    return model


@pytest.mark.parametrize("edit", ["cascade.json thresholds", "member model.onnx", "member config",
                                  "marker removed"])
def test_exported_models_refuse_to_load_when_a_file_changed(tiny_cascade: Path, tmp_path: Path, edit):
    from edge_committee.serve.triton.bls import CascadeBLS

    repo = tmp_path / "repo"
    export_triton(tiny_cascade, repo)
    assert verify_model(repo / "tiny") is None and verify_model(repo / "tiny.small") is None
    if edit == "cascade.json thresholds":
        path = repo / "tiny/1/cascade.json"
        spec = json.loads(path.read_text())
        spec["thresholds"] = [0.0 for _ in spec["thresholds"]]
        path.write_text(json.dumps(spec))
        match = r"cascade\.json: checksum mismatch"
    elif edit == "member model.onnx":
        path = repo / "tiny.medium/1/model.onnx"
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.unlink()  # the export may hard-link the bundle's file: never edit that one in place
        path.write_bytes(bytes(data))
        match = r"tiny\.medium/1/model\.onnx: checksum mismatch"
    elif edit == "member config":
        path = repo / "tiny.large/config.pbtxt"
        text = path.read_text()
        path.unlink()
        path.write_text(text + "\n# edited\n")
        match = r"tiny\.large/config\.pbtxt: checksum mismatch"
    else:
        (repo / "tiny" / MODEL_MARKER).unlink()
        match = "no readable edge_committee.model.json"
    with pytest.raises(IntegrityError, match=match):
        _load_as_triton(repo / "tiny", CascadeBLS)


def test_python_ort_member_checks_its_own_files(tiny_cascade: Path, tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from edge_committee.serve.triton.member_ort import OrtMemberModel

    repo = tmp_path / "repo"
    export_triton(tiny_cascade, repo, member_backend="python-ort")
    model = _load_as_triton(repo / "tiny.small", OrtMemberModel)  # intact: loads
    model.finalize()
    edited = repo / "tiny.small/1/_sdk/edge_committee/serve/triton/bls.py"
    edited.unlink()
    edited.write_text("# edited\n")
    with pytest.raises(IntegrityError, match=r"bls\.py: checksum mismatch"):
        _load_as_triton(repo / "tiny.small", OrtMemberModel)


def test_label_names_are_written_in_the_bundles_order(tiny_cascade: Path, tmp_path: Path):
    """t3 audit F6: sorting the labels in cascade.json or edge_committee.json passed every test."""
    from .conftest import manifest

    labels = manifest(tiny_cascade)["labels"]
    assert labels != sorted(labels)  # the check below can tell an order change
    r = export_triton(tiny_cascade, tmp_path / "repo", singles=["large"])
    assert json.loads((r.path / MARKER).read_text())["labels"] == labels
    for model in (r.cascade_model, *r.single_models.values()):
        assert json.loads((r.path / model / "1" / "cascade.json").read_text())["labels"] == labels
