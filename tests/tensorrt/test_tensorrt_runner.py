"""Loading and running engines against the recording fake: fingerprints, corrupt files, the
DeviceMember calls (set_input_shape, set_tensor_address, execute_async_v3 on the stream), and
`backend="tensorrt"` through the facade."""

from __future__ import annotations

import re
import sys
import types

import fake_trt
import pytest
from trt_helpers import install_fake

from edge_committee.backend.tensorrt.adapter import DeviceMemberRunner, device_members
from edge_committee.backend.tensorrt.compiler import compile_bundle
from edge_committee.backend.tensorrt.fingerprint import BuildOptions, EngineMismatchError
from edge_committee.backend.tensorrt.gpu import GpuInfo
from edge_committee.backend.tensorrt.runner import EngineLoadError, TensorRTMember
from edge_committee.bundle.bundle import edit_bundle
from edge_committee.cli.main import main
from edge_committee.errors import BundleError, DependencyError, EdgeCommitteeError
from edge_committee.runtime.cascade import CascadeModel


class Tensor:
    """What enqueue reads from a torch tensor: shape, dtype, data_ptr(), is_contiguous()."""

    def __init__(self, shape, dtype="float32", ptr=0x1000, contiguous=True):
        self.shape, self.dtype, self._ptr, self._contiguous = tuple(shape), dtype, ptr, contiguous

    def data_ptr(self) -> int:
        return self._ptr

    def is_contiguous(self) -> bool:
        return self._contiguous


class Stream:
    cuda_stream = 0xBEEF


@pytest.fixture
def compiled(bundle, fake_trt_module, gpu):
    compile_bundle(bundle, log=lambda s: None)
    return bundle


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_facade_runs_the_engines_in_the_device_runtime(compiled, fake_trt_module):
    from edge_committee.backend.device import DeviceCascade

    model = CascadeModel(compiled, backend="tensorrt")
    assert isinstance(model.executor, DeviceCascade)
    members = model.executor.members
    assert [m.path.name for m in members] == ["a.fp32.sm87.trt10.3.engine", "b.fp16.sm87.trt10.3.engine"]
    assert [m.name for m in members] == ["a", "b.fp16"]
    assert model.executor.capacity == 64  # the engines' max batch (compile's default)
    small = CascadeModel(compiled, backend="tensorrt", max_batch=8, mode="host")
    assert (small.executor.capacity, small.executor.requested_mode) == (8, "host")


def test_facade_host_loop_option_makes_one_runner_per_cascade_stage(compiled, fake_trt_module):
    model = CascadeModel(compiled, backend="tensorrt", host_loop=True)
    runners = model.executor.runners
    assert [type(r) for r in runners] == [DeviceMemberRunner, DeviceMemberRunner]
    assert [r.member.path.name for r in runners] == ["a.fp32.sm87.trt10.3.engine", "b.fp16.sm87.trt10.3.engine"]
    with pytest.raises(EdgeCommitteeError, match="host_loop=True takes only device and dla"):
        CascadeModel(compiled, backend="tensorrt", host_loop=True, mode="graph")


def test_member_binds_the_engine_io_and_enqueues_on_the_stream(compiled, fake_trt_module):
    model = CascadeModel(compiled, backend="tensorrt")
    (m, _) = device_members(model)
    m.activate(0)
    assert (m.input_shape, m.input_dtype, m.num_classes, m.max_batch) == ((1, 6, 6), "float32", 4, 64)
    fake = fake_trt_module
    fake.calls.clear()
    m.enqueue(Tensor((3, 1, 6, 6), ptr=0x10), Tensor((3, 4), ptr=0x20), Stream())
    m.enqueue(Tensor((3, 1, 6, 6), ptr=0x30), Tensor((3, 4), ptr=0x40), 0x77)  # same batch: shape not set again
    m.enqueue(Tensor((5, 1, 6, 6), ptr=0x50), Tensor((5, 4), ptr=0x60), Stream())
    new_context = [("ICudaEngine.create_execution_context", ("USER_MANAGED",)),
                   ("IExecutionContext.set_device_memory", (0xD000, 4096))]  # one shared block
    assert fake.calls == [
        *new_context,
        ("IExecutionContext.set_input_shape", ("input", (3, 1, 6, 6))),
        ("IExecutionContext.set_tensor_address", ("input", 0x10)),
        ("IExecutionContext.set_tensor_address", ("logits", 0x20)),
        ("IExecutionContext.execute_async_v3", (0xBEEF,)),
        ("IExecutionContext.set_tensor_address", ("input", 0x30)),
        ("IExecutionContext.set_tensor_address", ("logits", 0x40)),
        ("IExecutionContext.execute_async_v3", (0x77,)),
        *new_context,  # another batch size: a context of its own, the first one's shape never changes
        ("IExecutionContext.set_input_shape", ("input", (5, 1, 6, 6))),
        ("IExecutionContext.set_tensor_address", ("input", 0x50)),
        ("IExecutionContext.set_tensor_address", ("logits", 0x60)),
        ("IExecutionContext.execute_async_v3", (0xBEEF,)),
    ]
    fake.calls.clear()
    m.enqueue(Tensor((3, 1, 6, 6), ptr=0x10), Tensor((3, 4), ptr=0x20), Stream())  # back to 3: its context, as is
    assert [c[0] for c in fake.calls] == ["IExecutionContext.set_tensor_address"] * 2 + [
        "IExecutionContext.execute_async_v3"]
    m.enqueue(Tensor((0, 1, 6, 6)), Tensor((0, 4)), Stream())  # an empty batch runs nothing
    assert len(fake.calls) == 3
    m.deactivate()
    with pytest.raises(RuntimeError, match="not active"):
        m.enqueue(Tensor((1, 1, 6, 6)), Tensor((1, 4)), Stream())


def test_captured_shapes_never_change_a_context(compiled, fake_trt_module):
    """Review #7: a graph captured for one batch size is replayed later; its context must still have that shape.
    Each batch size gets its own context (shape set once); past MAX_CONTEXTS they share one reshaped context."""
    from edge_committee.backend.tensorrt import runner

    (m, _) = device_members(CascadeModel(compiled, backend="tensorrt"))
    m.activate()
    seen = {}
    for b in [1, 2, 4, 8, 1, 16, 2] + list(range(20, 20 + runner.MAX_CONTEXTS)):
        m.enqueue(Tensor((b, 1, 6, 6)), Tensor((b, 4)), Stream())
        ctx = m._context_for(b)
        assert seen.setdefault(b, ctx) is ctx or len(m._contexts) == runner.MAX_CONTEXTS
    contexts = list(m._contexts.values())
    assert len(contexts) == runner.MAX_CONTEXTS and len({id(c) for c in contexts}) == len(contexts)
    assert all(len(c._shapes) == 1 and next(iter(c._shapes.values()))[0] == b for b, c in m._contexts.items())
    shapes = [a for n, a in fake_trt_module.calls if n == "IExecutionContext.set_input_shape"]
    distinct = 5 + runner.MAX_CONTEXTS  # 1, 2, 4, 8, 16 and 20..35
    assert len(shapes) == runner.MAX_CONTEXTS + (distinct - runner.MAX_CONTEXTS)  # once each; past the limit, per call


@pytest.mark.parametrize("inp, message", [
    (Tensor((65, 1, 6, 6)), "batch 65 is larger than the engine's --max-batch 64"),
    (Tensor((2, 1, 8, 8)), r"input has shape \(2, 1, 8, 8\), the engine takes \(B, 1, 6, 6\)"),
    (Tensor((2, 1, 6, 6), dtype="float16"), "input is float16, the engine takes float32"),
    (Tensor((2, 1, 6, 6), contiguous=False), "must be contiguous"),
])
def test_enqueue_refuses_wrong_inputs(compiled, fake_trt_module, inp, message):
    (m, _) = device_members(CascadeModel(compiled, backend="tensorrt"))
    m.activate()
    with pytest.raises(EdgeCommitteeError, match=message):
        m.enqueue(inp, Tensor((inp.shape[0], 4)), Stream())


def test_tensorrt_failures_while_running(compiled, fake_trt_module):
    (m, _) = device_members(CascadeModel(compiled, backend="tensorrt"))
    m.activate()
    fake_trt_module.knobs.set_shape_ok = False
    with pytest.raises(EngineLoadError, match="TensorRT refused batch 2"):
        m.enqueue(Tensor((2, 1, 6, 6)), Tensor((2, 4)), Stream())
    fake_trt_module.knobs.set_shape_ok, fake_trt_module.knobs.execute_ok = True, False
    with pytest.raises(EngineLoadError, match="failed to enqueue batch 2"):
        m.enqueue(Tensor((2, 1, 6, 6)), Tensor((2, 4)), Stream())
    fake_trt_module.knobs.context_ok = False
    with pytest.raises(EngineLoadError, match="could not create an execution context"):
        m.activate()


def test_another_gpu_is_refused_naming_both_fingerprints_and_the_fix(compiled, fake_trt_module, gpu):
    gpu.current = GpuInfo("Xavier", "7.2")
    with pytest.raises(EngineMismatchError) as exc:
        CascadeModel(compiled, backend="tensorrt")
    text = one_line(exc)
    assert f"engine {compiled / 'members/a.fp32.sm87.trt10.3.engine'} was built for TensorRT 10.3.0.26 on Orin (sm87)" in text
    assert "this machine has TensorRT 10.3.0.26 on Xavier (sm72)" in text
    assert text.endswith(f"rebuild it with: edge-committee compile {compiled}")
    from edge_committee.backend.tensorrt import compat

    with pytest.MonkeyPatch.context() as mp:  # only the runtime here: the rebuild must happen elsewhere
        mp.setattr(compat, "builder_installed", lambda: False)
        with pytest.raises(EngineMismatchError) as exc:
            CascadeModel(compiled, backend="tensorrt")
    assert one_line(exc).endswith(f"rebuild it on a machine with this GPU and the full TensorRT (this one has only "
                                  f"the runtime, which cannot build engines) with: edge-committee compile {compiled}")


def test_another_tensorrt_version_is_refused(compiled, monkeypatch, gpu):
    install_fake(monkeypatch, fake_trt.Knobs(version="10.7.0.23"))
    with pytest.raises(EngineMismatchError, match="cannot run here: another TensorRT version; this machine has "
                                                  "TensorRT 10.7.0.23 on Orin"):
        CascadeModel(compiled, backend="tensorrt")


@pytest.mark.parametrize("built, running, ok", [("10.3.0.26", "10.3.0.26", True), ("10.3.0.26", "10.7.0.23", True),
                                                ("10.7.0.23", "10.3.0.26", False), ("10.3.0.26", "11.4.0.106", False)])
def test_version_compatible_engines_run_on_later_minor_versions(bundle, monkeypatch, gpu, built, running, ok):
    install_fake(monkeypatch, fake_trt.Knobs(version=built))
    compile_bundle(bundle, BuildOptions(version_compatible=True, max_batch=32), log=lambda s: None)
    fake = install_fake(monkeypatch, fake_trt.Knobs(version=running))
    if not ok:
        with pytest.raises(EngineMismatchError, match="not compatible with.*--max-batch 32 --version-compatible"):
            CascadeModel(bundle, backend="tensorrt")
        return
    members = CascadeModel(bundle, backend="tensorrt").executor.members
    members[0].activate()
    assert ("Runtime.engine_host_code_allowed=", (True,)) in fake.calls  # VC engines carry host code


def test_a_changed_member_file_makes_its_engine_stale(compiled, fake_trt_module):
    with edit_bundle(compiled) as ed:
        p = ed.add("members/b.fp16.onnx")
        data = (compiled / "members/b.fp16.onnx").read_bytes()
        p.unlink()
        p.write_bytes(data + b"\0")  # a new inode: the original stays as it was until the swap
    with pytest.raises(EngineMismatchError, match="b.fp16.sm87.trt10.3.engine.*its ONNX file changed since"):
        CascadeModel(compiled, backend="tensorrt")


def test_a_corrupt_engine_is_refused_before_tensorrt_sees_it(compiled, fake_trt_module):
    engine = compiled / "members/a.fp32.sm87.trt10.3.engine"
    engine.write_bytes(engine.read_bytes()[:-7])  # a truncated copy
    with pytest.raises(BundleError, match="a.fp32.sm87.trt10.3.engine: checksum mismatch"):
        CascadeModel(compiled, backend="tensorrt")
    (m, _) = device_members(CascadeModel(compiled, backend="tensorrt", verify=False))
    fake_trt_module.calls.clear()
    with pytest.raises(BundleError, match="a.fp32.sm87.trt10.3.engine is corrupt: sha256"):
        m.activate()
    assert "Runtime.deserialize_cuda_engine" not in [c[0] for c in fake_trt_module.calls]


def test_a_file_tensorrt_cannot_deserialize(tmp_path, fake_trt_module, gpu):
    junk = tmp_path / "junk.engine"
    junk.write_bytes(b"this is an ONNX file, not an engine")
    with pytest.raises(EngineLoadError) as exc:
        TensorRTMember(junk).activate()
    assert "could not deserialize" in one_line(exc) and "magicTagRead == kMAGIC_TAG" in str(exc.value)
    empty = tmp_path / "empty.engine"
    empty.write_bytes(b"")
    with pytest.raises(BundleError, match="is empty"):
        TensorRTMember(empty).activate()
    with pytest.raises(BundleError, match="does not exist"):
        TensorRTMember(tmp_path / "missing.engine").activate()


def test_a_runtime_that_cannot_start_is_refused_before_deserializing(compiled, fake_trt_module):
    fake_trt_module.knobs.runtime_error = "createInferRuntime: Error Code 6: API Usage Error (CUDA initialization failure)"
    (m, _) = device_members(CascadeModel(compiled, backend="tensorrt"))
    with pytest.raises(EngineLoadError, match="cannot start a runtime on this machine: createInferRuntime"):
        m.activate()  # the fake asserts if deserialize_cuda_engine is reached


def test_an_engine_with_two_outputs_is_not_a_member(tmp_path, fake_trt_module, gpu):
    from edge_committee.backend.tensorrt.build import build_engine

    fake_trt_module.knobs.outputs = {"logits": ((-1, 4), "FLOAT"), "features": ((-1, 16), "FLOAT")}
    from trt_helpers import linear_onnx

    linear_onnx(tmp_path / "m.onnx", 6)
    (tmp_path / "m.engine").write_bytes(build_engine(fake_trt_module, tmp_path / "m.onnx", BuildOptions()).engine)
    with pytest.raises(EngineLoadError, match=r"one input and one output; it has inputs \['input'\] and outputs"):
        TensorRTMember(tmp_path / "m.engine").activate()


def test_fp16_outputs_are_reported(tmp_path, fake_trt_module, gpu):
    from trt_helpers import linear_onnx

    from edge_committee.backend.tensorrt.build import build_engine

    fake_trt_module.knobs.inputs = {"input": ((-1, 1, 6, 6), "HALF")}
    fake_trt_module.knobs.outputs = {"logits": ((-1, 4), "HALF")}
    linear_onnx(tmp_path / "m.onnx", 6)
    (tmp_path / "m.engine").write_bytes(build_engine(fake_trt_module, tmp_path / "m.onnx", BuildOptions()).engine)
    m = TensorRTMember(tmp_path / "m.engine")
    m.activate()
    assert (m.input_dtype, m.output_dtype) == ("float16", "float16")


def test_an_uncompiled_bundle_says_to_compile_even_without_tensorrt(bundle, monkeypatch, capsys):
    from edge_committee.backend.tensorrt import compat

    for name in ("tensorrt", "tensorrt_bindings", "tensorrt_lean_bindings", "tensorrt_lean"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(compat, "compile_blocker", lambda: None)  # a machine that could compile
    with pytest.raises(BundleError) as exc:
        CascadeModel(bundle, backend="tensorrt")
    assert one_line(exc).endswith(f"has no TensorRT engine for member 'a'; build it on this machine with: "
                                  f"edge-committee compile {bundle}")
    monkeypatch.undo()
    with pytest.raises(BundleError, match=f"no TensorRT engine for member 'a' for DLA core 1.*compile {bundle} --dla 1"):
        CascadeModel(bundle, backend="tensorrt", dla=1)


@pytest.mark.parametrize("gpu, lean, why", [
    (False, True, "no NVIDIA GPU found on this machine"),
    (True, True, "only the TensorRT lean runtime is installed here, and it cannot build engines"),
    (True, False, "TensorRT is not installed here"),
])
def test_an_uncompiled_bundle_never_suggests_compile_where_it_cannot_run(bundle, monkeypatch, gpu, lean, why):
    from edge_committee.backend.tensorrt import compat

    for name in ("tensorrt", "tensorrt_bindings", "tensorrt_lean_bindings", "tensorrt_lean"):
        monkeypatch.setitem(sys.modules, name, None)
    if lean:
        monkeypatch.setitem(sys.modules, "tensorrt_lean", types.ModuleType("tensorrt_lean"))
    monkeypatch.setattr(compat, "nvidia_gpu_found", lambda: gpu)
    with pytest.raises(BundleError) as exc:
        CascadeModel(bundle, backend="tensorrt")
    text = one_line(exc)
    assert f"and this machine cannot build one ({why}): build it on the target device with: " in text
    assert text.endswith("here use --backend onnxrt, onnxrt-fused" if not gpu else
                         "here use --backend onnxrt, torch-cuda, onnxrt-fused")


def test_backend_tensorrt_without_tensorrt_says_what_to_install(compiled, monkeypatch, capsys):
    for name in ("tensorrt", "tensorrt_bindings", "tensorrt_lean_bindings", "tensorrt_lean"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DependencyError) as exc:
        CascadeModel(compiled, backend="tensorrt")
    text = one_line(exc)
    assert "--backend tensorrt needs TensorRT" in text and "JetPack" in text and "tensorrt-lean-cu13-bindings" in text
    assert re.search(r"use --backend onnxrt(, [a-z-]+)*$", text)  # onnxrt first, then other non-TensorRT backends
    img = compiled.parent / "img.npy"
    import numpy as np

    np.save(img, np.zeros((1, 6, 6), np.uint8))
    assert main(["predict", str(compiled), str(img), "--backend", "tensorrt"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend tensorrt needs TensorRT" in err


def test_dla_engines_are_chosen_by_option(bundle, monkeypatch, gpu):
    install_fake(monkeypatch, fake_trt.Knobs(dla_cores=2))
    with edit_bundle(bundle) as ed:  # a cascade of the FP16 member only: DLA takes FP16/INT8
        ed.manifest["cascade"] = {"members": ["b.fp16"], "thresholds": [], "confidence": "max_prob"}
    compile_bundle(bundle, BuildOptions(dla_core=1), log=lambda s: None)
    compile_bundle(bundle, log=lambda s: None)
    gpu_member = CascadeModel(bundle, backend="tensorrt").executor.members[0]
    dla_member = CascadeModel(bundle, backend="tensorrt", dla=1).executor.members[0]
    assert gpu_member.path.name == "b.fp16.sm87.trt10.3.engine"
    assert dla_member.path.name == "b.fp16.sm87.trt10.3.dla1.engine"
    with pytest.raises(EdgeCommitteeError, match="cores"):
        CascadeModel(bundle, backend="tensorrt", cores=2)


def test_whole_engine_executor_checks_the_plugin_library(bundle, fake_trt_module, gpu, tmp_path, monkeypatch):
    lib = tmp_path / "libedge_committee_plugins.so"
    lib.write_bytes(b"one build of the plugin")
    monkeypatch.setenv("EC_PLUGIN_LIBRARY", str(lib))
    fused = tmp_path / "fused.onnx"
    fused.write_bytes((bundle / "members/a.onnx").read_bytes())
    compile_bundle(bundle, whole=str(fused), log=lambda s: None)
    model = CascadeModel(bundle, backend="tensorrt", whole=True)
    assert model.executor.path.name == "cascade.sm87.trt10.3.engine"
    lib.write_bytes(b"another build of the plugin")
    with pytest.raises(EngineMismatchError, match="parsed with another CascadeGate plugin library"):
        CascadeModel(bundle, backend="tensorrt", whole=True)


def test_no_gpu_is_refused_before_tensorrt_makes_a_runtime(tmp_path, fake_trt_module, monkeypatch):
    from edge_committee.backend.tensorrt import gpu as gpu_module

    def no_gpu(device=0):
        raise gpu_module.NoGpuError("no NVIDIA driver on this machine (libcuda.so.1 not found)")

    monkeypatch.setattr(gpu_module, "gpu_info", no_gpu)
    engine = tmp_path / "m.engine"
    engine.write_bytes(fake_trt.MAGIC + b"{}")
    with pytest.raises(gpu_module.NoGpuError, match="libcuda.so.1 not found"):
        TensorRTMember(engine).activate()
    assert "Runtime" not in [c[0] for c in fake_trt_module.calls]
