"""export_onnx: dynamic batch, full checker, ONNX Runtime parity, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edge_committee.errors import EdgeCommitteeError  # noqa: E402
from edge_committee.export import ExportReport, export_onnx  # noqa: E402
from edge_committee.export import torch_onnx  # noqa: E402


def _cnn() -> "torch.nn.Module":
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, groups=8),
        torch.nn.Dropout(0.5),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    )


class _HwcNet(torch.nn.Module):
    """Takes (N, H, W, C) like a camera frame."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x.permute(0, 3, 1, 2)).mean(dim=(2, 3))
        return self.fc(y)


class _ExportDiffers(torch.nn.Module):
    """Computes something else while being exported: ONNX and PyTorch disagree by exactly 1."""

    def forward(self, x):
        if torch.onnx.is_in_onnx_export():
            return x.flatten(1) + 1.0
        return x.flatten(1)


class _TwoOutputs(torch.nn.Module):
    def forward(self, x):
        return x, x


def test_export_writes_checked_file_with_dynamic_batch(tmp_path):
    model = _cnn().train()
    out = tmp_path / "sub" / "m.onnx"
    report = export_onnx(model, (3, 16, 16), out)
    assert isinstance(report, ExportReport)
    assert report.path == str(out) and report.opset == 17 and report.input_shape == (3, 16, 16)
    assert 0.0 <= report.max_abs_diff <= report.tolerance == 1e-4
    assert not model.training  # put in eval mode (Dropout off, BN running stats)
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]  # no temporary left

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    (inp,), (outp,) = proto.graph.input, proto.graph.output
    assert (inp.name, outp.name) == ("input", "logits")
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [3, 16, 16]

    x = np.random.default_rng(1).standard_normal((5, 3, 16, 16), dtype=np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_export_is_deterministic_and_names_are_configurable(tmp_path):
    model = _cnn()
    a = export_onnx(model, (3, 8, 8), tmp_path / "a.onnx", opset=18, input_name="x", output_name="y")
    export_onnx(model, (3, 8, 8), tmp_path / "b.onnx", opset=18, input_name="x", output_name="y")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    proto = onnx.load(a.path)
    assert a.opset == 18 and proto.graph.input[0].name == "x" and proto.graph.output[0].name == "y"


def test_hwc_input_shape(tmp_path):
    report = export_onnx(_HwcNet(), (12, 10, 3), tmp_path / "hwc.onnx")
    dims = onnx.load(report.path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [12, 10, 3]


def test_parity_batches_cover_1_and_3():
    sizes = [len(b) for b in torch_onnx._parity_inputs((2,), 8, seed=0)]
    assert sizes == [1, 3, 1, 3]
    assert [len(b) for b in torch_onnx._parity_inputs((2,), 5, seed=0)] == [1, 3, 1]


def test_parity_failure_raises_names_file_and_numbers_and_leaves_nothing(tmp_path):
    out = tmp_path / "bad.onnx"
    out.write_bytes(b"previous good file")
    with pytest.raises(EdgeCommitteeError) as err:
        export_onnx(_ExportDiffers(), (4,), out)
    msg = str(err.value)
    assert str(out) in msg and "max |diff| = 1" in msg and "tolerance 0.0001" in msg
    assert out.read_bytes() == b"previous good file"  # untouched: written only after checks
    assert [p.name for p in tmp_path.iterdir()] == ["bad.onnx"]


def test_zero_tolerance_fails_on_any_difference(tmp_path, monkeypatch):
    real = torch_onnx._run_onnx

    def nudged(path, name, batches):
        return [y + np.float32(1e-6) for y in real(path, name, batches)]

    monkeypatch.setattr(torch_onnx, "_run_onnx", nudged)
    with pytest.raises(EdgeCommitteeError, match="above the tolerance 0"):
        export_onnx(_cnn(), (3, 8, 8), tmp_path / "m.onnx", parity_tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


def test_checker_runs_with_full_check_and_failure_is_reported(tmp_path, monkeypatch):
    calls = []

    def failing_checker(model, full_check=False, **kw):
        calls.append(full_check)
        raise onnx.checker.ValidationError("bad node\nmore detail")

    monkeypatch.setattr(onnx.checker, "check_model", failing_checker)
    with pytest.raises(EdgeCommitteeError, match=r"m\.onnx: .*onnx\.checker.*bad node$"):
        export_onnx(_cnn(), (3, 8, 8), tmp_path / "m.onnx")
    assert calls == [True]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shape": (3, 0, 8)}, "input_shape"),
        ({"input_shape": "3x8x8"}, "input_shape"),
        ({"opset": 16}, "opset must be at least 17"),
        ({"parity_samples": 3}, "parity_samples must be at least 4"),
        ({"parity_tolerance": -1.0}, "parity_tolerance"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    args = {"model": _cnn(), "input_shape": (3, 8, 8), "out_path": tmp_path / "m.onnx", **kwargs}
    with pytest.raises(EdgeCommitteeError, match=match):
        export_onnx(**args)


def test_not_a_module_or_not_one_output(tmp_path):
    with pytest.raises(EdgeCommitteeError, match="torch.nn.Module"):
        export_onnx(lambda x: x, (3,), tmp_path / "f.onnx")
    with pytest.raises(EdgeCommitteeError, match="must return one tensor"):
        export_onnx(_TwoOutputs(), (3,), tmp_path / "t.onnx")
    assert list(tmp_path.iterdir()) == []
