"""The device runtime every GPU backend plugs into: one stream, state on the GPU, host loop or one CUDA graph.

:class:`DeviceCascade` runs any :class:`~edge_committee.backend.base.device.DeviceMember` s (PyTorch
members from :mod:`edge_committee.backend.torch_cuda`; TensorRT engines from their own backend).
Importing this package imports neither torch nor cuda-python.
"""

from edge_committee.backend.device.runtime import DeviceCascade, default_buckets


def executor_for(model, members, **options) -> DeviceCascade:
    """A :class:`DeviceCascade` running ``members`` (one per cascade member, in order) for a loaded model.

    Every GPU backend's cascade factory ends here, e.g. TensorRT's:
    ``executor_for(model, device_members(model, device=d), device=d, mode="graph")``.
    """
    import inspect

    from edge_committee.errors import EdgeCommitteeError

    known = [p for p in inspect.signature(DeviceCascade).parameters
             if p not in ("members", "preprocessing", "thresholds", "confidence", "labels")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise EdgeCommitteeError(f"backend {model.backend}: unknown option(s) {unknown}; the device runtime "
                                 f"takes {', '.join(known)}")
    return DeviceCascade(members, model.preprocessing, model.thresholds, model.confidence, model.labels, **options)


__all__ = ["DeviceCascade", "default_buckets", "executor_for"]
