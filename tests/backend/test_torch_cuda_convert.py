"""onnx2torch conversion of every example member equals ONNX Runtime; the torch-cuda backend on the CPU.

Tolerance: max |logit diff| <= 1e-4 against ONNX Runtime on the same float32 input (measured about
1e-6 to 7e-6; float32 convolutions summed in another order).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_committee.errors import DependencyError, EdgeCommitteeError

torch = pytest.importorskip("torch")
if importlib.util.find_spec("onnx2torch") is None:  # not importorskip: onnx2torch is imported our way
    pytest.skip("needs onnx2torch (the test extra)", allow_module_level=True)
ort = pytest.importorskip("onnxruntime")

from edge_committee.backend.torch_cuda import ModuleFromOnnx, TorchMember, cuda_unavailable_reason  # noqa: E402
from edge_committee.backend.torch_cuda.loader import _torchvision_stand_in  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fashion_mnist"
FMNIST = Path("/usr/share/datasets/fashion-mnist")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def example_members(tmp_path_factory) -> list[tuple[str, Path, tuple]]:
    """The six example members exported to ONNX as the build does: [(name, path, input shape)].

    The exporter's own parity check (``export_onnx``) is skipped for time; these settings are its own
    (TorchScript exporter, opset 17, dynamic batch named ``batch``).
    """
    import warnings

    from edge_committee.export.loader import load_torch_member
    from edge_committee.spec import load_spec

    spec = load_spec(EXAMPLE / "committee.yaml")
    out = tmp_path_factory.mktemp("members")
    members = []
    for m in spec.members:
        model = load_torch_member(m.factory, dict(m.kwargs), m.weights, base_dir=spec.base_dir)
        shape = m.preprocessing.input_shape(1)[1:]
        path = out / f"{m.name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, torch.zeros(1, *shape), str(path), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        members.append((m.name, path, shape))
    return members


def inputs_for(name: str, shape: tuple, n: int = 16) -> np.ndarray:
    """Real Fashion-MNIST test images through the member's preprocessing when present, else noise."""
    if FMNIST.is_dir():
        from edge_committee.data.readers import read_idx
        from edge_committee.spec import load_spec

        pp = next(m.preprocessing for m in load_spec(EXAMPLE / "committee.yaml").members if m.name == name)
        return pp(read_idx(FMNIST / "t10k-images-idx3-ubyte.gz")[:n])
    return np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32)


def test_every_example_member_converts(example_members):
    assert len(example_members) == 6
    for name, path, shape in example_members:
        x = inputs_for(name, shape)
        want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        module = ModuleFromOnnx(path)()
        with torch.no_grad():
            got = module(torch.from_numpy(x)).numpy()
        err = float(np.abs(got - want).max())
        assert err <= TOLERANCE, f"{name}: max |diff| {err:.3g} > {TOLERANCE}"
        assert np.array_equal(got.argmax(1), want.argmax(1)) or err < 1e-5


def test_every_example_member_is_capturable(example_members):
    """No host read (``.item()``/``Size(tensor)``/``nonzero``) when run, and none in ``torch.export``'s graph at a
    fixed shape (the ImageNet members: ``test_torch_cuda_capturable.py``)."""
    from edge_committee.backend.torch_cuda.capturable import HOST_READ_OPS, host_reads

    for name, path, shape in example_members:
        module = ModuleFromOnnx(path)()
        x = torch.from_numpy(inputs_for(name, shape, 2))
        assert host_reads(module, x) == [], name
        ep = torch.export.export(module, (x,), strict=False)
        ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert not [op for op in ops if any(f"aten.{bad}." in op for bad in HOST_READ_OPS)], (name, ops)


def test_torch_member_enqueue_fp32_and_fp16(example_members):
    name, path, shape = example_members[0]
    x = inputs_for(name, shape, 8)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    member = TorchMember(path, name=name)
    assert member.input_shape == shape and member.num_classes == 10 and member.input_dtype == "float32"
    member.activate("cpu")
    out = torch.full((8, 10), float("nan"))
    member.enqueue(torch.from_numpy(x), out, None)
    assert np.abs(out.numpy() - want).max() <= TOLERANCE
    assert TorchMember(path, precision="fp16").input_dtype == "float16"
    with pytest.raises(EdgeCommitteeError, match="precision 'int4'"):
        TorchMember(path, precision="int4")


def test_torchvision_stand_in_is_removed_and_explains():
    """onnx2torch imports without a working torchvision; the stand-in never leaks; using it explains."""
    import edge_committee.backend.torch_cuda.loader as loader

    loader.import_onnx2torch()
    assert sys.modules.get("torchvision") is None or hasattr(sys.modules["torchvision"], "__file__")
    stand_in = _torchvision_stand_in("CUDA build under CPU torch")
    with pytest.raises(DependencyError, match="torchvision op"):
        stand_in.ops.nms(None, None, 0.5)


def test_bad_onnx_file_is_a_user_error(tmp_path):
    with pytest.raises(EdgeCommitteeError, match="no such ONNX file"):
        ModuleFromOnnx(tmp_path / "missing.onnx")()
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "q.onnx"))
    with pytest.raises(EdgeCommitteeError, match="INT8 member"):
        ModuleFromOnnx(tmp_path / "q.onnx")()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where no GPU is visible")
def test_no_gpu_names_what_is_missing_and_what_works(built_bundle):
    import edge_committee as ec

    assert cuda_unavailable_reason() is not None
    with pytest.raises(DependencyError) as e:
        ec.load(built_bundle, backend="torch-cuda")
    msg = str(e.value)
    assert "\n" not in msg and "torch-cuda" in msg and "onnxrt" in msg and torch.__version__ in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where no GPU is visible")
def test_cli_predict_without_gpu_exits_1(built_bundle, tmp_path, capsys):
    from edge_committee.cli.main import main

    np.save(tmp_path / "x.npy", np.zeros((2, 12, 12, 3), np.uint8))
    assert main(["predict", str(built_bundle), str(tmp_path / "x.npy"), "--backend", "torch-cuda"]) == 1
    err = capsys.readouterr().err
    assert "onnxrt" in err and "Traceback" not in err


def test_bundle_on_the_cpu_matches_the_host_loop(built_bundle):
    """The torch-cuda backend's runtime on the CPU (device='cpu') agrees with ONNX Runtime + the NumPy gate."""
    import edge_committee as ec

    images = np.load(built_bundle.parent / "test.npz")["x"]  # the tiny committee's test split (300)
    with ec.load(built_bundle, gate="numpy") as ref_model:
        ref = ref_model.predict(images)
    with ec.load(built_bundle, backend="torch-cuda", device="cpu", max_batch=32) as model:
        got = model.predict(images)
        assert model.executor.mode == "eager"
    assert np.array_equal(got.exit_stage, ref.exit_stage) and np.array_equal(got.flags, ref.flags)
    assert np.array_equal(got.labels, ref.labels)
    assert np.abs(got.probs - ref.probs).max() <= 1e-5
    assert got.names() == ref.names()


def test_cuda_array_to_a_host_backend_is_refused(built_bundle):
    import edge_committee as ec

    class FakeCudaArray:
        __cuda_array_interface__ = {"shape": (1, 12, 12, 3), "typestr": "|u1", "data": (0, False), "version": 3}

    with ec.load(built_bundle) as model, pytest.raises(EdgeCommitteeError, match="torch-cuda"):
        model.predict(FakeCudaArray())
