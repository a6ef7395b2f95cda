"""FP16 conversion: onnx.checker passes, float32 I/O by default, ORT output close to FP32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edge_committee.backend.onnxrt import OnnxrtRunner
from edge_committee.errors import EdgeCommitteeError
from edge_committee.precision import fp16_from_fp32


def _run(path, x):
    with OnnxrtRunner(path, threads=1) as r:
        return r.infer(x)


def test_fp16_keeps_float32_io_and_stores_float16_weights(tiny_onnx, tmp_path):
    out = fp16_from_fp32(tiny_onnx, tmp_path / "tiny.fp16.onnx")
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    f32 = onnx.TensorProto.FLOAT
    assert m.graph.input[0].type.tensor_type.elem_type == f32
    assert m.graph.output[0].type.tensor_type.elem_type == f32
    weights = [t for t in m.graph.initializer if len(t.dims) >= 2]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    # dynamic batch survives
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param


def test_fp16_close_to_fp32_with_onnxruntime(tiny_onnx, tmp_path, calib_inputs):
    out = fp16_from_fp32(tiny_onnx, tmp_path / "tiny.fp16.onnx")
    ref, got = _run(tiny_onnx, calib_inputs), _run(out, calib_inputs)
    assert got.dtype == np.float32
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 5e-3 * scale + 1e-3
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.99


def test_fp16_without_io_casts_takes_float16(tiny_onnx, tmp_path, calib_inputs):
    out = fp16_from_fp32(tiny_onnx, tmp_path / "io16.onnx", keep_io_types=False)
    m = onnx.load(str(out))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    got = _run(out, calib_inputs[:4])  # the runner casts the batch to the model's type
    assert np.allclose(got, _run(tiny_onnx, calib_inputs[:4]), atol=0.05)


def test_fp16_missing_or_corrupt_source_is_named(tmp_path):
    with pytest.raises(EdgeCommitteeError, match="missing.onnx"):
        fp16_from_fp32(tmp_path / "missing.onnx", tmp_path / "x.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(EdgeCommitteeError, match="bad.onnx"):
        fp16_from_fp32(bad, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
