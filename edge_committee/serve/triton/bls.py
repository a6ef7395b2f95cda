"""The cascade as a Triton Python-backend (BLS) model: the SDK's own host loop, members over BLS.

Triton runs :class:`CascadeBLS` as ``TritonPythonModel`` (the exported ``model.py`` imports it
from this version folder's copy of ``edge_committee``). It builds the same
:class:`~edge_committee.runtime.cascade.HostLoop` that ``ec.load(bundle).predict`` runs, with
two differences only: each member runner (:class:`TritonMemberRunner`) calls the member's
Triton model through BLS (``pb_utils.InferenceRequest``), and the gate step is the NumPy
reference (:func:`edge_committee.cascade.reference.gate_step`). So raw uint8 images come in,
each member's :class:`~edge_committee.spec.preprocess.Preprocessing` runs here, member ``k+1`` is
called with the survivors of member ``k`` only, and the outputs are those of
:class:`~edge_committee.runtime.cascade.Prediction`.

The cascade description (task, members, their Triton models and tensors, preprocessing, thresholds,
confidence function, labels) is ``cascade.json`` beside ``model.py``, written by the export. A
segmentation bundle runs the tile cascade's :class:`~edge_committee.runtime.tiles.TileHostLoop`
the same way (member 0 on the frames, later members on the deferred tiles' windows, over BLS); a
video bundle runs the clip cascade's :class:`~edge_committee.runtime.clips.ClipHostLoop` (uint8
``clips`` in, each member called on its own view of the clips still active); each task's input,
loop and outputs are in :mod:`~edge_committee.serve.triton.tasks`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_committee.backend.base.runner import BaseRunner
from edge_committee.errors import EdgeCommitteeError
from edge_committee.serve.triton.integrity import require_intact
from edge_committee.serve.triton.tasks import check_images, gate_for, task_kind  # noqa: F401 (their old home)
from edge_committee.serve.triton.tensors import as_array, to_tensor
from edge_committee.spec.preprocess import Preprocessing

CASCADE_JSON = "cascade.json"
INPUT = "images"
#: a classification cascade's outputs, in order (labels, confidence, exit stage and flags are (N, 1));
#: every task's outputs: :mod:`edge_committee.serve.triton.tasks`
OUTPUTS = ("labels", "confidence", "exit_stage", "flags", "probs")


class MemberCallError(RuntimeError):
    """A member model answered a BLS request with an error."""


class TritonMemberRunner(BaseRunner):
    """Runs one member by calling its Triton model through BLS, in chunks of ``max_batch``.

    Args:
        pb_utils: the ``triton_python_backend_utils`` module.
        model: the member's Triton model name.
        input_name, output_name: its tensors.
        input_dtype: NumPy dtype of its input (float32, or float16 for FP16 plans and ONNX files).
        input_dims: its input shape without the batch dimension.
        num_classes: the number of logits per sample.
        max_batch: the member model's ``max_batch_size``.
        version: the member model's version to call (-1: the server's choice, by its version
            policy); an export names the version written with the cascade, so two versions of a
            cascade served side by side each call their own members.
    """

    def __init__(self, pb_utils, model: str, input_name: str, output_name: str, input_dtype: str,
                 input_dims: list[int], num_classes: int, max_batch: int, version: int = -1) -> None:
        super().__init__(model)
        self.version = int(version)
        self.pb_utils = pb_utils
        self.input_name, self.output_name = input_name, output_name
        self.input_dtype = np.dtype(input_dtype)
        self.input_dims = tuple(int(d) for d in input_dims)
        self.classes = int(num_classes)
        self.max_batch = max(1, int(max_batch))
        # members on a GPU (onnxruntime, tensorrt_plan) answer in device memory unless asked
        # otherwise; the gate runs in NumPy, so ask for the logits in CPU memory (Triton >= 23.04)
        self._cpu_output = ({"preferred_memory": pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)}
                            if hasattr(pb_utils, "PreferredMemory") else {})

    def activate_impl(self) -> None:  # the member model is loaded by the server
        pass

    def deactivate_impl(self) -> None:
        pass

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        parts = [self._call(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _call(self, chunk: np.ndarray) -> np.ndarray:
        pb = self.pb_utils
        x = to_tensor(pb, self.input_name, chunk.astype(self.input_dtype, copy=False))
        response = pb.InferenceRequest(model_name=self.name, requested_output_names=[self.output_name],
                                       inputs=[x], model_version=self.version, **self._cpu_output).exec()
        if response.has_error():
            raise MemberCallError(f"member model {self.name!r}: {response.error().message()}")
        logits = as_array(pb.get_output_tensor_by_name(response, self.output_name))
        return logits.astype(np.float32)  # a copy: the response's memory goes with it

    def input_shape(self) -> tuple:
        """Symbolic where the model's dims vary (-1: a segmentation member's height and width)."""
        return ("batch", *(d if d > 0 else f"dim{i}" for i, d in enumerate(self.input_dims, 1)))

    def num_classes(self) -> int:
        return self.classes


def host_loop(spec: dict, pb_utils):
    """The SDK's loop for a ``cascade.json`` description (its task's: the classification host loop, the
    tile cascade or the clip cascade), with BLS member runners."""
    kind = task_kind(spec.get("task"))
    runners = [TritonMemberRunner(pb_utils, m["model"], m["input"], m["output"], m["input_dtype"],
                                  m["input_dims"], m["num_classes"], m["max_batch"], m.get("version", -1))
               for m in spec["members"]]
    preprocessing = [Preprocessing.from_dict(m["preprocessing"], where=f"member {m['name']}")
                     for m in spec["members"]]
    return kind.loop(spec, runners, preprocessing)


def split_prediction(pred, counts: list[int], task: str | None = None) -> list[dict[str, np.ndarray]]:
    """Per-request output arrays of one prediction over the concatenated requests."""
    arrays = task_kind(task).arrays(pred)
    out, start = [], 0
    for n in counts:
        out.append({name: value[start : start + n] for name, value in arrays.items()})
        start += n
    return out


def _invalid_argument(pb_utils, message: str):
    """A client's error (HTTP 400 / gRPC INVALID_ARGUMENT where the backend has error codes, 23.09+)."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


class CascadeBLS:
    """``TritonPythonModel`` of the cascade: one host-loop run per batch of requests (the loop and the
    outputs of the bundle's task, :mod:`~edge_committee.serve.triton.tasks`).

    The requests of one ``execute`` call (the dynamic batcher's batch) run as one cascade batch,
    so member calls carry every active sample of every request. A request whose images are
    malformed gets an error response; the others are answered.
    """

    def initialize(self, args: dict) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb_utils = pb_utils
        model_dir = Path(args["model_repository"])
        require_intact(model_dir)  # cascade.json, model.py, the SDK copy: as export-triton wrote them
        folder = model_dir / args["model_version"]
        self.spec = json.loads((folder / CASCADE_JSON).read_text(encoding="utf-8"))
        require_intact(*(model_dir.parent / m["model"] for m in self.spec["members"]))
        self.loop = host_loop(self.spec, pb_utils)
        self.loop.activate()

    @property
    def kind(self):
        """The bundle's task (``cascade.json``'s ``task``): its loop and outputs."""
        return task_kind(self.spec.get("task"))

    @property
    def outputs(self) -> list[str]:
        return [o.name for o in self.kind.outputs(self.spec)]

    def execute(self, requests: list) -> list:
        pb = self.pb_utils
        responses: list = [None] * len(requests)
        batches: list[tuple[int, np.ndarray]] = []
        for i, request in enumerate(requests):
            x = as_array(pb.get_input_tensor_by_name(request, self.kind.input))
            problem = self.kind.check(x, self.spec)
            if problem:
                responses[i] = pb.InferenceResponse(output_tensors=[], error=_invalid_argument(pb, problem))
            else:
                batches.append((i, x))
        if batches:
            self._answer(requests, batches, responses)
        return responses

    def _answer(self, requests: list, batches: list[tuple[int, np.ndarray]], responses: list) -> None:
        pb = self.pb_utils
        arrays = [x for _, x in batches]
        same = all(a.shape[1:] == arrays[0].shape[1:] for a in arrays)
        images = np.concatenate(arrays) if same else [im for a in arrays for im in a]
        try:
            pred = self.kind.run(self.loop, images)
        except (MemberCallError, EdgeCommitteeError) as exc:  # the whole batch fails, each request is told
            for i, _ in batches:
                responses[i] = pb.InferenceResponse(output_tensors=[], error=pb.TritonError(str(exc)))
            return
        for (i, _), outputs in zip(batches, split_prediction(pred, [len(a) for a in arrays], self.kind.name)):
            wanted = requests[i].requested_output_names() or self.outputs
            responses[i] = pb.InferenceResponse(
                output_tensors=[to_tensor(pb, name, outputs[name]) for name in self.outputs if name in wanted])

    def finalize(self) -> None:
        self.loop.deactivate()
