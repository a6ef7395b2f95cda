"""export-triton without a server: configs (parsed by tritonclient's own protobuf), engines, atomicity."""

from __future__ import annotations

import os
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_committee.cli.main import main
from edge_committee.errors import EdgeCommitteeError
from edge_committee.serve.triton import export as export_mod
from edge_committee.serve.triton.export import MARKER, export_triton

from .conftest import manifest


def parse_config(path: Path):
    """A config.pbtxt parsed into Triton's ModelConfig message (fails on any unknown field)."""
    text_format = pytest.importorskip("google.protobuf.text_format")
    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    cfg = mc.ModelConfig()
    text_format.Parse(path.read_text(), cfg)
    return cfg, mc


def test_onnxruntime_repository(tiny_cascade: Path, tmp_path: Path):
    out = tmp_path / "repo"
    r = export_triton(tiny_cascade, out, max_batch=32, instances=2)
    digest = json.loads((tiny_cascade / "manifest.json").read_text())["manifest_sha256"]  # inspect's identity
    info = json.loads((out / MARKER).read_text())
    assert info["manifest_sha256"] == digest == r.manifest_sha256
    assert r.cascade_model == "tiny" and list(r.member_models) == ["small", "medium", "large"]
    # the medium member is NHWC 8x8 RGB: dims come from its preprocessing, the ONNX names from the file
    cfg, mc = parse_config(out / "tiny.medium" / "config.pbtxt")
    assert cfg.backend == "onnxruntime" and cfg.max_batch_size == 32 and cfg.HasField("dynamic_batching")
    assert cfg.default_model_filename == "model.onnx" and (out / "tiny.medium/1/model.onnx").is_file()
    inputs = [(t.name, list(t.dims), mc.DataType.Name(t.data_type)) for t in cfg.input]
    assert inputs == [("input", [8, 8, 3], "TYPE_FP32")]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("logits", [4])]
    assert cfg.instance_group[0].count == 2
    assert cfg.parameters["edge_committee.manifest_sha256"].string_value == digest
    cascade, _ = parse_config(out / "tiny" / "config.pbtxt")
    assert cascade.backend == "python" and mc.DataType.Name(cascade.input[0].data_type) == "TYPE_UINT8"
    assert [o.name for o in cascade.output] == ["labels", "confidence", "exit_stage", "flags", "probs"]
    assert list(cascade.output[-1].dims) == [4]
    spec = json.loads((out / "tiny/1/cascade.json").read_text())
    assert spec["thresholds"] == [0.9, 0.8] and [m["model"] for m in spec["members"]] == list(r.member_models.values())
    assert spec["members"][0]["preprocessing"] == manifest(tiny_cascade)["members"][0]["preprocessing"]


def test_python_ort_members_and_singles(tiny_cascade: Path, tmp_path: Path):
    r = export_triton(tiny_cascade, tmp_path / "repo", member_backend="python-ort", threads=1, singles=["large"])
    cfg, mc = parse_config(r.path / "tiny.small" / "config.pbtxt")
    assert cfg.backend == "python" and cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert cfg.parameters["threads"].string_value == "1"
    assert (r.path / "tiny.small/1/model.py").is_file() and (r.path / "tiny.small/1/_sdk/edge_committee").is_dir()
    assert r.single_models == {"large": "tiny.large.alone"}
    single = json.loads((r.path / "tiny.large.alone/1/cascade.json").read_text())
    assert [m["model"] for m in single["members"]] == ["tiny.large"] and single["thresholds"] == []


def test_sdk_copy_is_self_contained(tiny_cascade: Path, tmp_path: Path):
    """The BLS model imports only the copied modules, even with edge_committee installed."""
    r = export_triton(tiny_cascade, tmp_path / "repo", member_backend="python-ort")
    sdk = r.path / "tiny" / "1" / "_sdk"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import edge_committee.serve.triton.bls, "
            "edge_committee.serve.triton.member_ort; "
            "print('\\n'.join(m.__file__ for k, m in sys.modules.items() if k.startswith('edge_committee')))")
    out = subprocess.run([sys.executable, "-c", code, str(sdk)], capture_output=True, text=True, check=True)
    files = out.stdout.split()
    assert len(files) >= 10 and all(f.startswith(str(sdk)) for f in files)
    heavy = ("import sys; sys.path.insert(0, sys.argv[1]); import edge_committee.serve.triton.bls; "
             "print(sorted({'torch', 'onnx', 'onnxruntime', 'yaml', 'matplotlib', 'cv2'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", heavy, str(sdk)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # the BLS model needs only NumPy in the server's Python


def test_tensorrt_needs_engines(tiny_cascade: Path, tmp_path: Path, capsys):
    code = main(["export-triton", str(tiny_cascade), "--out", str(tmp_path / "repo"), "--member-backend", "tensorrt"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "has no GPU TensorRT engine" in err and f"edge-committee compile {tiny_cascade}" in err
    assert not (tmp_path / "repo").exists()


def add_engines(bundle: Path, builds: list[tuple[str, str, int]]) -> None:
    """List placeholder engines in the manifest as ``edge-committee compile`` does: (cc, TensorRT, max batch)."""
    from edge_committee.backend.tensorrt.engines import put_engine
    from edge_committee.backend.tensorrt.fingerprint import BuildOptions, Fingerprint, engine_file
    from edge_committee.bundle import edit_bundle

    with edit_bundle(bundle) as ed:
        for m in ed.manifest["members"]:
            for cc, trt, max_batch in builds:
                fp = Fingerprint(trt, "GPU", cc, m["sha256"], BuildOptions(max_batch=max_batch, opt_batch=1).to_dict())
                rel = engine_file(m["name"], m["precision"], fp)
                ed.add(rel).write_bytes(b"not a real plan: " + rel.encode())
                put_engine(ed.manifest, {"member": m["name"], "kind": "member", "file": rel, "precision": m["precision"],
                                         "fingerprint": fp.to_dict(), "input": "input", "max_batch": max_batch})


def test_tensorrt_plans_from_manifest_engines(tiny_cascade: Path, tmp_path: Path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_cascade, bundle)
    add_engines(bundle, [("8.7", "10.3.0.26", 16), ("9.0", "10.3.0.26", 16), ("9.0", "10.13.2.6", 16)])
    code = main(["export-triton", str(bundle), "--out", str(tmp_path / "repo"), "--member-backend", "tensorrt"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "compute capability 9.0 from TensorRT 10.13.2.6, 10.3.0.26" in err and "--tensorrt-version" in err
    r = export_triton(bundle, tmp_path / "repo", member_backend="tensorrt", max_batch=64, tensorrt_version="10.3")
    cfg, mc = parse_config(r.path / "tiny.large" / "config.pbtxt")
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 16  # the engines' profile caps it
    files = {"8.7": "large.fp32.sm87.trt10.3.engine", "9.0": "large.fp32.sm90.trt10.3.engine"}
    assert dict(cfg.cc_model_filenames) == files
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert (r.path / "tiny.large/1" / files["9.0"]).read_bytes().startswith(b"not a real plan")
    assert json.loads((r.path / "tiny/1/cascade.json").read_text())["members"][2]["max_batch"] == 16


def test_export_is_atomic_and_never_overwrites_other_folders(tiny_cascade: Path, tmp_path: Path, monkeypatch):
    other = tmp_path / "data"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(EdgeCommitteeError, match="not an exported repository"):
        export_triton(tiny_cascade, other)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]

    out = tmp_path / "repo"
    first = export_triton(tiny_cascade, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def broken(dest):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod, "copy_sdk", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_triton(tiny_cascade, out, member_backend="python-ort")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # the earlier export is intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left
    assert json.loads((out / MARKER).read_text())["member_backend"] == first.member_backend


def test_labels_versions_warmup_and_preferred_batches(tiny_cascade: Path, tmp_path: Path):
    out = tmp_path / "repo"
    labels = manifest(tiny_cascade)["labels"]
    export_triton(tiny_cascade, out, preferred_batch_sizes=(1, 8, 64, 128))
    for model in ("tiny", "tiny.small"):
        assert (out / model / "labels.txt").read_text().splitlines() == labels
    cascade, _ = parse_config(out / "tiny" / "config.pbtxt")
    assert cascade.output[-1].label_filename == "labels.txt"  # probs: the classification extension names classes
    assert cascade.version_policy.latest.num_versions == 1
    assert list(cascade.dynamic_batching.preferred_batch_size) == [1, 8, 64]  # <= max_batch
    assert not cascade.model_warmup  # the BLS model does not call members while they load
    member, mc = parse_config(out / "tiny.medium" / "config.pbtxt")
    assert member.output[0].label_filename == "labels.txt"
    assert [(w.batch_size, w.inputs["input"].zero_data, list(w.inputs["input"].dims)) for w in member.model_warmup] \
        == [(1, True, [8, 8, 3]), (64, True, [8, 8, 3])]
    assert mc.DataType.Name(member.model_warmup[0].inputs["input"].data_type) == "TYPE_FP32"

    saved = tmp_path / "v1_config.pbtxt"
    os.link(out / "tiny" / "config.pbtxt", saved)  # the file as it was: never written through
    before = saved.read_text()
    r = export_triton(tiny_cascade, out, version=2, version_policy="all", warmup=False)
    assert r.versions == (1, 2) and (out / "tiny/1/cascade.json").is_file() and (out / "tiny/2/cascade.json").is_file()
    assert saved.read_text() == before
    cascade, _ = parse_config(out / "tiny" / "config.pbtxt")
    assert cascade.version_policy.HasField("all")
    assert {m["version"] for m in json.loads((out / "tiny/2/cascade.json").read_text())["members"]} == {2}
    assert json.loads((out / MARKER).read_text())["versions"] == [1, 2]
    with pytest.raises(EdgeCommitteeError, match=r"already has version 2 \(versions: 1, 2\); choose a new --version"):
        export_triton(tiny_cascade, out, version=2)
    assert (out / "tiny/2/model.py").is_file()  # the refused export changed nothing
    r = export_triton(tiny_cascade, out)  # no --version: the repository is replaced by version 1
    assert r.versions == (1,) and not (out / "tiny/2").exists()


def test_preferred_batch_sizes_come_from_the_profiles():
    from edge_committee.serve.triton.export import profiled_batch_sizes

    assert profiled_batch_sizes({}) == ()
    assert profiled_batch_sizes({"profiles": {"a": {"batch_sizes": [64, 1, 8]}, "b": {"batch_sizes": [8, 32]}}}) \
        == (8, 32, 64)  # not 1: a lone request would never wait for the queue delay


@pytest.mark.parametrize("argv, message", [
    (["--version-policy", "newest"], "--version-policy 'newest': expected latest, latest:N, all or specific"),
    (["--version", "0"], "--version 0: must be an integer >= 1"),  # cli/_numbers.py checks it first
    (["--form", "fused", "--member-backend", "tensorrt"], "for TensorRT use --form bls --member-backend tensorrt"),
    (["--name", ""], "--name '': expected a model name"),  # t3 S5: fell back to the bundle's name silently
    (["--name", "* /"], "--name '* /': expected a model name"),
])
def test_bad_triton_options_are_one_line(tiny_cascade: Path, tmp_path: Path, capsys, argv, message):
    code = main(["export-triton", str(tiny_cascade), "--out", str(tmp_path / "repo"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "repo").exists()


def test_fused_form_for_the_onnxruntime_backend(tiny_cascade: Path, tmp_path: Path):
    """The export-onnx file as one model; rank-1 outputs reshaped so clients see [N, 1] as from BLS."""
    onnx = pytest.importorskip("onnx")
    r = export_triton(tiny_cascade, tmp_path / "repo", form="fused", source_size="12x12x3")
    assert r.form == "fused" and r.member_models == {} and sorted(p.name for p in r.path.iterdir()) == [MARKER, "tiny"]
    cfg, mc = parse_config(r.path / "tiny" / "config.pbtxt")
    assert cfg.backend == "onnxruntime" and cfg.default_model_filename == "model.onnx"
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in cfg.input] \
        == [("images", "TYPE_UINT8", [12, 12, 3])]
    shapes = {t.name: (list(t.dims), t.HasField("reshape") and list(t.reshape.shape)) for t in cfg.output}
    assert shapes == {"labels": ([1], []), "confidence": ([1], []), "exit_stage": ([1], []), "flags": ([1], []),
                      "probs": ([4], False)}
    assert cfg.model_warmup[0].inputs["images"].zero_data
    model = onnx.load(str(r.path / "tiny/1/model.onnx"))
    assert [o.name for o in model.graph.output] == [t.name for t in cfg.output]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["edge_committee.manifest_sha256"] == r.manifest_sha256


def test_export_suggests_serve_only_where_it_can_run(tiny_cascade: Path, tmp_path: Path, capsys, monkeypatch):
    from edge_committee.serve.triton import server

    class NoOnnxruntime:
        def has_backend(self, name):
            return name == "python"

        def cleanup(self):
            pass

    monkeypatch.setattr(server, "find_server", lambda binary=None: NoOnnxruntime())
    assert main(["export-triton", str(tiny_cascade), "--out", str(tmp_path / "a")]) == 0
    hint = capsys.readouterr().out.splitlines()[-1]
    assert "edge-committee serve" not in hint and "--member-backend python-ort" in hint and "container" in hint
    assert main(["export-triton", str(tiny_cascade), "--out", str(tmp_path / "b"), "--member-backend",
                 "python-ort"]) == 0
    assert f"edge-committee serve {tmp_path / 'b'}" in capsys.readouterr().out
