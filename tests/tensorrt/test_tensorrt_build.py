"""Building engines against the recording fake: the call sequence, every option, every error path,
and how `compile` stores fingerprinted engines in the bundle."""

from __future__ import annotations

import json
import os
import sys

import fake_trt
import pytest
from trt_helpers import install_fake

from edge_committee.backend.tensorrt.build import EngineBuildError, build_engine
from edge_committee.backend.tensorrt.compiler import compile_bundle
from edge_committee.backend.tensorrt.fingerprint import BuildOptions
from edge_committee.bundle.bundle import edit_bundle, read_manifest
from edge_committee.cli.main import main
from edge_committee.errors import BundleError, DependencyError, EdgeCommitteeError

STRONG = 1 << 1  # 1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED) in the fake


def names(fake) -> list[str]:
    return [c[0] for c in fake.calls]


def call(fake, name: str) -> tuple:
    hits = [args for n, args in fake.calls if n == name]
    assert hits, f"{name} was not called; calls: {names(fake)}"
    return hits[-1]


def in_order(seq: list[str], wanted: list[str]) -> bool:
    it = iter(seq)
    return all(w in it for w in wanted)


def test_compile_builds_every_cascade_member_strongly_typed(bundle, fake_trt_module, gpu):
    lines = []
    entries = compile_bundle(bundle, log=lines.append)
    fake = fake_trt_module
    assert in_order(names(fake), [
        "Builder", "Builder.create_network", "OnnxParser", "OnnxParser.parse_from_file", "Builder.create_builder_config",
        "IBuilderConfig.set_memory_pool_limit", "IOptimizationProfile.set_shape", "IBuilderConfig.add_optimization_profile",
        "IBuilderConfig.create_timing_cache", "IBuilderConfig.set_timing_cache", "Builder.build_serialized_network"] * 2)
    assert [a for n, a in fake.calls if n == "Builder.create_network"] == [(STRONG,), (STRONG,)]
    assert [a[0] for n, a in fake.calls if n == "OnnxParser.parse_from_file"] == [
        str(bundle / "members/a.onnx"), str(bundle / "members/b.fp16.onnx")]
    assert call(fake, "IBuilderConfig.set_memory_pool_limit") == (fake.MemoryPoolType.WORKSPACE, 1024 << 20)
    assert call(fake, "IOptimizationProfile.set_shape") == ("input", (1, 1, 6, 6), (8, 1, 6, 6), (64, 1, 6, 6))
    assert call(fake, "Builder.build_serialized_network") == ([],)  # no precision flag: strongly typed
    assert "IBuilderConfig.builder_optimization_level=" not in names(fake)  # TensorRT's default level
    assert [e["file"] for e in entries] == ["members/a.fp32.sm87.trt10.3.engine", "members/b.fp16.sm87.trt10.3.engine"]
    assert sum("built in" in line for line in lines) == 2 and "a (fp32): built in" in "\n".join(lines)


def test_compile_stores_fingerprinted_checksummed_engines(bundle, fake_trt_module, gpu):
    before = read_manifest(bundle)
    compile_bundle(bundle, BuildOptions(max_batch=32, opt_batch=4), log=lambda s: None)
    manifest = read_manifest(bundle, verify=True)  # every file listed and its checksum right
    entries = manifest["tensorrt"]["engines"]
    assert [e["member"] for e in entries] == ["a", "b.fp16"]
    fp = entries[1]["fingerprint"]
    assert fp["tensorrt"] == "10.3.0.26" and (fp["gpu"], fp["compute_capability"]) == ("Orin", "8.7")
    assert fp["onnx_sha256"] == before["files"]["members/b.fp16.onnx"] and fp["plugin_sha256"] is None
    assert fp["options"] == {"max_batch": 32, "opt_batch": 4, "workspace_mb": 1024, "opt_level": None,
                             "dla_core": None, "version_compatible": False}
    assert fp["typing"] == "strong" and entries[1]["max_batch"] == 32
    for e in entries:
        assert e["file"] in manifest["files"]
        assert (bundle / e["file"]).read_bytes().startswith(fake_trt.MAGIC)
    assert manifest["tensorrt"]["timing_caches"] == {"sm87.trt10.3": "timing.sm87.trt10.3.cache"}
    assert manifest["members"] == before["members"]  # the members themselves are untouched


def test_timing_cache_is_stored_and_reused(bundle, monkeypatch, gpu):
    first = install_fake(monkeypatch)
    compile_bundle(bundle, log=lambda s: None)
    stored = (bundle / "timing.sm87.trt10.3.cache").read_bytes()
    assert stored == b"tt"  # the empty cache, timed once by each of the two builds
    assert [a[0] for n, a in first.calls if n == "IBuilderConfig.create_timing_cache"] == [b"", b"t"]
    second = install_fake(monkeypatch)
    lines = []
    compile_bundle(bundle, log=lines.append)
    assert [a[0] for n, a in second.calls if n == "IBuilderConfig.create_timing_cache"][0] == b"tt"
    assert "reusing the bundle's timing cache" in lines[0]
    assert call(second, "IBuilderConfig.set_timing_cache") == (False,)  # a mismatched cache is not ignored


def test_recompiling_replaces_the_engine_of_the_same_machine(bundle, fake_trt_module, gpu):
    compile_bundle(bundle, log=lambda s: None)
    compile_bundle(bundle, BuildOptions(max_batch=16, opt_batch=2), log=lambda s: None)
    entries = read_manifest(bundle)["tensorrt"]["engines"]
    assert len(entries) == 2 and {e["fingerprint"]["options"]["max_batch"] for e in entries} == {16}


def test_engines_for_two_gpus_live_side_by_side(bundle, fake_trt_module, gpu):
    from edge_committee.backend.tensorrt.gpu import GpuInfo

    compile_bundle(bundle, log=lambda s: None)
    gpu.current = GpuInfo("NVIDIA H200", "9.0")
    compile_bundle(bundle, log=lambda s: None)
    files = sorted(e["file"] for e in read_manifest(bundle)["tensorrt"]["engines"])
    assert files == ["members/a.fp32.sm87.trt10.3.engine", "members/a.fp32.sm90.trt10.3.engine",
                     "members/b.fp16.sm87.trt10.3.engine", "members/b.fp16.sm90.trt10.3.engine"]


def test_build_options_reach_the_config(bundle, fake_trt_module, gpu):
    opts = BuildOptions(max_batch=128, opt_batch=16, workspace_mb=256, opt_level=5, version_compatible=True)
    entries = compile_bundle(bundle, opts, all_members=True, log=lambda s: None)
    fake = fake_trt_module
    assert call(fake, "IBuilderConfig.set_memory_pool_limit")[1] == 256 << 20
    assert call(fake, "IBuilderConfig.builder_optimization_level=") == (5,)
    assert call(fake, "IOptimizationProfile.set_shape")[2:] == ((16, 1, 6, 6), (128, 1, 6, 6))
    assert call(fake, "Builder.build_serialized_network") == (["VERSION_COMPATIBLE"],)
    assert "IBuilderConfig.plugins_to_serialize=" not in names(fake)  # members have no plugin
    assert entries[0]["file"] == "members/a.fp32.sm87.trt10.3.vc.engine"


@pytest.mark.parametrize("kwargs, message", [
    ({"opt_batch": 80}, "--opt-batch 80 is larger than --max-batch 64"),
    ({"max_batch": 0}, "--max-batch 0"),
    ({"opt_level": 6}, "levels are 0..5"),
    ({"workspace_mb": 0}, "--workspace-mb 0"),
    ({"dla_core": -1}, "--dla -1"),
    ({"dla_core": 0, "version_compatible": True}, "--dla 0 with --version-compatible: .*drop one"),
])
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(EdgeCommitteeError, match=message):
        BuildOptions(**kwargs)


def test_dla_is_refused_where_the_device_has_none(bundle, fake_trt_module, gpu):
    with pytest.raises(EngineBuildError, match="this device has no DLA.*drop --dla"):
        compile_bundle(bundle, BuildOptions(dla_core=0), log=lambda s: None)
    assert "OnnxParser.parse_from_file" not in names(fake_trt_module)  # refused before parsing
    fake_trt_module.knobs.dla_cores = 2
    with pytest.raises(EngineBuildError, match="--dla 2: this device has 2 DLA cores"):
        build_engine(fake_trt_module, bundle / "members/b.fp16.onnx", BuildOptions(dla_core=2), "fp16")
    with pytest.raises(EngineBuildError, match="DLA runs FP16 and INT8 only.*fp32"):
        compile_bundle(bundle, BuildOptions(dla_core=1), log=lambda s: None)  # member 'a' is FP32
    assert not any((bundle / "members").glob("*.engine"))


@pytest.mark.parametrize("version, precision, flags, network_flags, typing", [
    ("10.3.0.26", "fp16", ["FP16", "GPU_FALLBACK"], 0, "weak"),
    ("10.3.0.26", "int8", ["FP16", "GPU_FALLBACK", "INT8"], 0, "weak"),
    ("11.4.0.106", "fp16", ["GPU_FALLBACK"], STRONG, "strong"),
    ("11.4.0.106", "int8", ["GPU_FALLBACK"], STRONG, "strong"),
])
def test_dla_with_gpu_fallback(bundle, monkeypatch, version, precision, flags, network_flags, typing):
    fake = install_fake(monkeypatch, fake_trt.Knobs(version=version, dla_cores=2))
    res = build_engine(fake, bundle / "members/b.fp16.onnx", BuildOptions(dla_core=1), precision)
    assert call(fake, "IBuilderConfig.default_device_type=") == (fake.DeviceType.DLA,)
    assert call(fake, "IBuilderConfig.DLA_core=") == (1,)
    assert call(fake, "Builder.build_serialized_network") == (sorted(flags),)
    assert call(fake, "Builder.create_network") == (network_flags,)
    assert res.typing == typing


def test_parser_errors_name_the_node_and_leave_the_bundle_alone(bundle, fake_trt_module, gpu):
    before = (bundle / "manifest.json").read_bytes()
    fake_trt_module.knobs.parse_errors = [(3, "Resize: antialias is not supported")]
    with pytest.raises(EngineBuildError, match=r"parser refused .*a\.onnx: node 3: Resize: antialias"):
        compile_bundle(bundle, log=lambda s: None)
    assert (bundle / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["bundle"]  # no staging folder left


def test_a_failed_build_writes_nothing(bundle, fake_trt_module, gpu):
    before = (bundle / "manifest.json").read_bytes()
    fake_trt_module.knobs.build_error = "Internal Error: could not find any implementation for node Gemm"
    fake_trt_module.knobs.builds_before_error = 1  # the first member builds, the second fails
    with pytest.raises(EngineBuildError, match="could not build b.fp16.onnx: Internal Error: could not find"):
        compile_bundle(bundle, log=lambda s: None)
    assert (bundle / "manifest.json").read_bytes() == before
    assert not any(bundle.rglob("*.engine")) and not any(bundle.rglob("*.cache"))


def test_builder_and_cache_failures(bundle, fake_trt_module, gpu):
    fake_trt_module.knobs.timing_cache_ok = False
    with pytest.raises(EngineBuildError, match="refused the bundle's timing cache"):
        compile_bundle(bundle, log=lambda s: None)
    fake_trt_module.knobs.builder_error = "CUDA initialization failure with error: 35"
    with pytest.raises(EngineBuildError, match="cannot start a builder on this machine: CUDA initialization"):
        compile_bundle(bundle, log=lambda s: None)


def test_only_the_batch_may_be_dynamic(bundle, fake_trt_module, gpu):
    fake_trt_module.knobs.inputs = {"input": ((-1, 1, -1, 6), "FLOAT")}
    with pytest.raises(EngineBuildError, match=r"input 'input' has shape \(-1, 1, -1, 6\): only the batch"):
        compile_bundle(bundle, log=lambda s: None)


def test_a_fixed_batch_needs_no_profile(bundle, fake_trt_module, gpu):
    fake_trt_module.knobs.inputs = {"input": ((1, 1, 6, 6), "FLOAT")}
    entries = compile_bundle(bundle, log=lambda s: None)
    assert "IBuilderConfig.add_optimization_profile" not in names(fake_trt_module)
    assert entries[0]["max_batch"] == 1


# -- the fused cascade (--whole) ------------------------------------------------------------

@pytest.fixture
def plugin_library(tmp_path, monkeypatch):
    lib = tmp_path / "libedge_committee_plugins.so"
    lib.write_bytes(b"\x7fELF not really a library")  # the fake registry only records the path
    monkeypatch.setenv("EC_PLUGIN_LIBRARY", str(lib))
    return lib


def _add_fused_file(bundle, gate="plugin", rel="cascade.plugin.onnx"):
    """List a (stand-in) fused file the way ``export-onnx --into-bundle`` does."""
    with edit_bundle(bundle) as ed:
        dst = ed.add(rel)
        dst.write_bytes((bundle / "members/a.onnx").read_bytes())
        ed.manifest.setdefault("fused_onnx", []).append(
            {"file": rel, "gate": gate, "form": "compact", "cascade": dict(ed.manifest["cascade"])})
    return bundle / rel


def test_whole_picks_the_plugin_file_for_the_current_cascade(bundle, fake_trt_module, gpu, plugin_library):
    _add_fused_file(bundle, gate="standard", rel="fused/cascade.standard.onnx")
    with pytest.raises(BundleError, match="found none"):  # the standard-gate file is not for TensorRT
        compile_bundle(bundle, whole=True, log=lambda s: None)
    _add_fused_file(bundle)
    with edit_bundle(bundle) as ed:  # a re-selected cascade makes the listed file stale
        ed.manifest["fused_onnx"][-1]["cascade"]["thresholds"] = [0.123]
    with pytest.raises(BundleError, match="found none"):
        compile_bundle(bundle, whole=True, log=lambda s: None)


def test_whole_loads_the_plugin_library_before_parsing(bundle, fake_trt_module, gpu, plugin_library):
    from edge_committee._util import sha256_file

    fake_trt_module.knobs.inputs = {"images": ((-1, 28, 28, 1), "UINT8")}
    fused = _add_fused_file(bundle)
    entries = compile_bundle(bundle, whole=True, log=lambda s: None)
    seq = names(fake_trt_module)
    assert in_order(seq, ["IPluginRegistry.load_library", "IPluginRegistry.get_creator", "OnnxParser.parse_from_file"])
    assert call(fake_trt_module, "IPluginRegistry.load_library") == (str(plugin_library.resolve()),)
    assert call(fake_trt_module, "IPluginRegistry.get_creator") == ("CascadeGate", "1", "edge_committee")
    assert call(fake_trt_module, "OnnxParser.parse_from_file") == (str(fused),)
    # the plugin aliases its state outputs to its inputs (in place, no copies): needs the preview feature
    assert call(fake_trt_module, "IBuilderConfig.set_preview_feature") == ("ALIASED_PLUGIN_IO_10_03", True)
    assert call(fake_trt_module, "IOptimizationProfile.set_shape") == ("images", (1, 28, 28, 1), (8, 28, 28, 1),
                                                                        (64, 28, 28, 1))
    (e,) = entries
    assert e["file"] == "cascade.sm87.trt10.3.engine" and e["kind"] == "cascade" and e["member"] is None
    assert e["onnx"] == "cascade.plugin.onnx"
    assert e["fingerprint"]["plugin_sha256"] == sha256_file(plugin_library)
    assert e["fingerprint"]["onnx_sha256"] == sha256_file(fused)
    assert "members/a.fp32.sm87.trt10.3.engine" not in read_manifest(bundle)["files"]  # members not built


def test_whole_takes_a_file_outside_the_bundle(bundle, fake_trt_module, gpu, plugin_library, tmp_path):
    fused = tmp_path / "fused.onnx"
    fused.write_bytes((bundle / "members/a.onnx").read_bytes())
    (e,) = compile_bundle(bundle, BuildOptions(version_compatible=True), whole=str(fused), log=lambda s: None)
    assert e["onnx"] is None and e["file"] == "cascade.sm87.trt10.3.vc.engine"
    assert call(fake_trt_module, "IBuilderConfig.plugins_to_serialize=") == ([str(plugin_library.resolve())],)


def test_whole_errors(bundle, fake_trt_module, gpu, plugin_library, monkeypatch):
    with pytest.raises(BundleError, match="needs one fused cascade ONNX file with the plugin gate.*\\(found none\\).*export-onnx"):
        compile_bundle(bundle, whole=True, log=lambda s: None)
    with pytest.raises(BundleError, match="--whole /nonexistent.onnx: no such file"):
        compile_bundle(bundle, whole="/nonexistent.onnx", log=lambda s: None)
    with pytest.raises(BundleError, match="cannot run on DLA"):
        compile_bundle(bundle, BuildOptions(dla_core=0), whole=True, log=lambda s: None)
    _add_fused_file(bundle)
    monkeypatch.setenv("EC_PLUGIN_LIBRARY", str(plugin_library) + ".missing")
    with pytest.raises(DependencyError, match="EC_PLUGIN_LIBRARY"):
        compile_bundle(bundle, whole=True, log=lambda s: None)


# -- without TensorRT ----------------------------------------------------------------------

def _hide_tensorrt(monkeypatch, lean: bool = False):
    for name in ("tensorrt", "tensorrt_bindings", "tensorrt_lean_bindings", "tensorrt_lean"):
        monkeypatch.setitem(sys.modules, name, None)
    if lean:
        lean_module = fake_trt.make_fake(fake_trt.Knobs("11.4.0.106"))
        lean_module.__name__ = "tensorrt_lean"
        monkeypatch.setitem(sys.modules, "tensorrt_lean", lean_module)


def test_compile_without_tensorrt_says_what_to_install(bundle, monkeypatch, capsys):
    _hide_tensorrt(monkeypatch)
    assert main(["compile", str(bundle)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "TensorRT is not installed" in err and "JetPack" in err and "tensorrt-cu12" in err
    assert "--backend onnxrt" in err


def test_compile_without_a_gpu_says_so_first(bundle, monkeypatch, capsys):
    from edge_committee.backend.tensorrt import compat

    _hide_tensorrt(monkeypatch, lean=True)
    monkeypatch.setattr(compat, "nvidia_gpu_found", lambda: False)
    assert main(["compile", str(bundle)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: no NVIDIA GPU found on this machine")
    assert "run edge-committee compile on the target device" in err
    assert err.endswith("run bundles with --backend onnxrt, onnxrt-fused")  # torch-cuda cannot run here either


def test_compile_with_only_the_lean_runtime(bundle, monkeypatch):
    _hide_tensorrt(monkeypatch, lean=True)
    with pytest.raises(DependencyError, match="only the TensorRT lean runtime \\(tensorrt_lean 11.4.0.106\\).*cannot build"):
        compile_bundle(bundle, log=lambda s: None)


def test_too_old_tensorrt_is_refused(bundle, monkeypatch, gpu):
    install_fake(monkeypatch, fake_trt.Knobs(version="8.6.1"))
    with pytest.raises(DependencyError, match="TensorRT 8.6.1 .* is too old: edge_committee needs TensorRT >= 10.3"):
        compile_bundle(bundle, log=lambda s: None)


def test_cli_compile_prints_progress(bundle, fake_trt_module, gpu, capsys):
    assert main(["compile", str(bundle), "--max-batch", "16", "--opt-batch", "4", "--workspace-mb", "512",
                 "--opt-level", "4", "--all"]) == 0
    out = capsys.readouterr().out
    assert "[1/2] a (fp32): built in" in out and "[2/2] b.fp16 (fp16): built in" in out
    assert "2 engine(s) stored" in out
    fp = json.loads((bundle / "manifest.json").read_text())["tensorrt"]["engines"][0]["fingerprint"]
    assert fp["options"]["opt_level"] == 4 and fp["options"]["workspace_mb"] == 512


def test_cli_refuses_a_bad_option_in_one_line(bundle, fake_trt_module, gpu, capsys):
    assert main(["compile", str(bundle), "--opt-batch", "100"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--opt-batch 100 is larger than --max-batch 64" in err
    assert not os.path.exists(bundle / "timing.sm87.trt10.3.cache")


def test_cli_refuses_dla_with_version_compatible_up_front(bundle, monkeypatch, capsys):
    """TensorRT rejects a version-compatible DLA engine only after parsing; the CLI refuses the pair before it
    even looks for TensorRT (here: none installed), in one line."""
    _hide_tensorrt(monkeypatch)
    assert main(["compile", str(bundle), "--dla", "0", "--version-compatible"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dla 0 with --version-compatible" in err and "not installed" not in err
