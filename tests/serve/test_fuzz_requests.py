"""Fuzz the Triton cascade model's request decoding: the exported BLS model's ``execute`` is fed
arbitrary request tensors (dtype, rank, sizes, values, several requests per batch) through a
stand-in ``triton_python_backend_utils``; its member calls run the exported ``model.onnx`` files
with ONNX Runtime. Each request gets either the Python API's exact answer or an error response;
``execute`` itself never raises. Case count: ``EC_FUZZ_EXAMPLES``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ..fuzzing import FUZZ, Tally

pytest.importorskip("onnxruntime")

TALLY = Tally("triton-requests")


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, np.ascontiguousarray(array)

    def __dlpack__(self, *args, **kwargs):
        return self.array.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


class TritonError:
    def __init__(self, message: str, code=None) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class Response:
    def __init__(self, output_tensors, error=None) -> None:
        self.output_tensors, self._error = list(output_tensors), error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self):
        return self._error


class ClientRequest:
    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def requested_output_names(self) -> list[str]:
        return []


class FakePb:
    """The parts of ``triton_python_backend_utils`` the cascade model uses."""

    TritonError = TritonError
    InferenceResponse = Response

    def __init__(self, repo: Path) -> None:
        from edge_committee.backend.onnxrt.runner import OnnxrtRunner

        self.runners = {}
        for folder in repo.iterdir():
            if (folder / "1" / "model.onnx").is_file():
                self.runners[folder.name] = OnnxrtRunner(folder / "1" / "model.onnx", threads=1, name=folder.name)
                self.runners[folder.name].activate()
        pb = self

        class InferenceRequest:
            def __init__(self, model_name, requested_output_names, inputs, **kwargs) -> None:
                self.model, self.outputs, self.inputs = model_name, requested_output_names, inputs

            def exec(self):
                logits = pb.runners[self.model].infer(self.inputs[0].array)
                return Response([Tensor(self.outputs[0], logits)])

        self.InferenceRequest = InferenceRequest

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return Tensor(name, request.x)

    @staticmethod
    def get_output_tensor_by_name(response, name):
        return next(t for t in response.output_tensors if t.name == name)


@pytest.fixture(scope="module")
def model(tiny_cascade: Path, tmp_path_factory):
    from edge_committee.runtime import CascadeModel
    from edge_committee.serve.triton import bls
    from edge_committee.serve.triton.export import export_triton

    repo = export_triton(tiny_cascade, tmp_path_factory.mktemp("fuzz-triton") / "repo").path
    spec = json.loads((repo / "tiny" / "1" / "cascade.json").read_text())
    pb = FakePb(repo)
    cascade = bls.CascadeBLS.__new__(bls.CascadeBLS)
    cascade.pb_utils, cascade.spec = pb, spec
    cascade.loop = bls.host_loop(spec, pb)
    cascade.loop.activate()
    real_to_tensor = bls.to_tensor
    bls.to_tensor = lambda _pb, name, array: Tensor(name, array)  # DLPack capsules need the real stub
    with CascadeModel(tiny_cascade, threads=1) as api:
        yield cascade, api
    bls.to_tensor = real_to_tensor
    TALLY.report()


@st.composite
def request_arrays(draw):
    dtype = draw(st.sampled_from(["uint8"] * 6 + ["float32", "int64", "bool", "float16", "int8"]))
    rank = draw(st.sampled_from([4] * 6 + [0, 1, 2, 3, 5]))
    dims = [draw(st.integers(0 if draw(st.integers(0, 9)) == 0 else 1, 40)) for _ in range(rank)]
    if rank == 4 and draw(st.integers(0, 3)):
        dims[0] = min(dims[0], 6)
        dims[-1] = draw(st.sampled_from([1, 3, 3, 1, 2, 4]))
    seed = draw(st.integers(0, 2**32 - 1))
    raw = np.random.default_rng(seed).integers(0, 256, size=dims)
    kind = draw(st.sampled_from(["random", "black", "white"]))
    if kind != "random":
        raw = np.full(dims, 0 if kind == "black" else 255)
    return raw.astype(dtype)


@FUZZ
@given(arrays=st.lists(request_arrays(), min_size=1, max_size=3))
def test_every_request_gets_the_api_answer_or_an_error_response(model, arrays):
    cascade, api = model
    TALLY.example()
    try:
        responses = cascade.execute([ClientRequest(x) for x in arrays])
    except Exception as exc:  # noqa: BLE001 - the property under test
        raise AssertionError(f"execute raised {type(exc).__name__} for {[(a.dtype, a.shape) for a in arrays]}: "
                             f"{exc}") from exc
    assert len(responses) == len(arrays)
    for x, r in zip(arrays, responses):
        if r.has_error():
            assert r.error().message(), "an error response says why"
            TALLY.add("requests: error response")
            continue
        out = {t.name: t.array for t in r.output_tensors}
        want = api.predict(x)
        assert out["labels"][:, 0].tolist() == want.labels.tolist(), (x.dtype, x.shape)
        assert out["exit_stage"][:, 0].tolist() == want.exit_stage.tolist()
        np.testing.assert_allclose(out["probs"], want.probs, atol=1e-6)
        TALLY.add("requests: answered")


def test_a_request_of_the_wrong_dtype_is_refused_and_the_others_answered(model, tiny_images):
    cascade, api = model
    good = tiny_images[:3]
    responses = cascade.execute([ClientRequest(good.astype(np.float32)), ClientRequest(good)])
    assert responses[0].has_error() and "must be uint8" in responses[0].error().message()
    out = {t.name: t.array for t in responses[1].output_tensors}
    assert out["labels"][:, 0].tolist() == api.predict(good).labels.tolist()
