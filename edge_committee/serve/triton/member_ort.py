"""One member as a Triton Python-backend model hosting an ONNX Runtime session.

For servers without Triton's ``onnxruntime`` backend (the ``tritonserver`` that
``nvidia-pytriton`` bundles has only the Python backend). The session is the SDK's own
:class:`~edge_committee.backend.onnxrt.OnnxrtRunner`, the runner ``ec.load(bundle).predict``
uses on the CPU, so a member answers here exactly as it does in the Python API. The interface is
float32 in (the member's preprocessed input, batch first) and float32 logits out; the runner casts
for FP16 members. Config parameters: ``threads``, ONNX Runtime intra-op threads (0: its default);
``output_rank``, 4 for a segmentation member's ``(N, C, h, w)`` logits (default 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_committee.backend.onnxrt.runner import OnnxrtRunner
from edge_committee.serve.triton.integrity import require_intact
from edge_committee.serve.triton.tensors import as_array, to_tensor

MODEL_FILE = "model.onnx"


class OrtMemberModel:
    """``TritonPythonModel`` of one member: all requests of a batch in one ``session.run``."""

    def initialize(self, args: dict) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb_utils = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        require_intact(args["model_repository"])  # model.onnx as export-triton wrote it
        path = Path(args["model_repository"]) / args["model_version"] / MODEL_FILE
        threads = int(params.get("threads") or 0) or None
        self.runner = OnnxrtRunner(path, threads=threads, name=config["name"])
        self.runner.output_rank = int(params.get("output_rank") or 2)  # 4: a segmentation member's dense logits
        self.runner.activate()

    def execute(self, requests: list) -> list:
        pb = self.pb_utils
        xs = [as_array(pb.get_input_tensor_by_name(r, self.input_name)) for r in requests]
        logits = self.runner.infer(xs[0] if len(xs) == 1 else np.concatenate(xs))
        responses, start = [], 0
        for x in xs:
            rows = logits[start : start + len(x)]
            responses.append(pb.InferenceResponse(output_tensors=[to_tensor(pb, self.output_name, rows)]))
            start += len(x)
        return responses

    def finalize(self) -> None:
        self.runner.deactivate()


class FusedOrtModel:
    """``TritonPythonModel`` of a fused cascade file (``export-triton --form fused --member-backend
    python-ort``): one ONNX Runtime session on ``model.onnx``, uint8 images in, the file's outputs
    out, the rank-1 ones as ``[N, 1]`` (the shapes the ``onnxruntime`` form's config gives them; a
    segmentation file's outputs keep their shapes)."""

    def initialize(self, args: dict) -> None:
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        self.pb_utils = pb_utils
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int((config.get("parameters", {}).get("threads") or {}).get("string_value")
                                           or 0)
        path = Path(args["model_repository"]) / args["model_version"] / MODEL_FILE
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list) -> list:
        pb = self.pb_utils
        xs = [as_array(pb.get_input_tensor_by_name(r, self.input_name)) for r in requests]
        images = xs[0] if len(xs) == 1 else np.concatenate(xs)
        outputs = dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: images})))
        responses, start = [], 0
        for x in xs:
            rows = slice(start, start + len(x))
            tensors = [to_tensor(pb, n, v[rows, None] if v.ndim == 1 else v[rows]) for n, v in outputs.items()]
            responses.append(pb.InferenceResponse(output_tensors=tensors))
            start += len(x)
        return responses

    def finalize(self) -> None:
        self.session = None
