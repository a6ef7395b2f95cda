"""TensorRT: build a bundle's members (and the fused cascade) into fingerprinted engines, and run them.

- :mod:`.build`: one engine from one ONNX file (strongly typed network, batch profile,
  workspace, optimization level, DLA, version compatibility, timing cache, plugin library).
- :mod:`.compiler`: ``edge-committee compile``: every engine of a bundle, stored in it atomically.
- :mod:`.fingerprint` / :mod:`.engines`: what an engine was built from and for; choosing the one
  that runs on this machine.
- :mod:`.runner`: :class:`TensorRTMember`, a ``DeviceMember`` (``tensorrt`` or the lean runtime).
- :mod:`.adapter`: ``backend="tensorrt"``: :func:`device_members` for the device runtime, and an
  interim host-loop executor.
- :mod:`.compat`: which TensorRT module, its version, and the names only some versions have.

Importing this package imports no TensorRT module; each function imports it when called.
"""

from edge_committee.backend.tensorrt.fingerprint import BuildOptions, EngineMismatchError, Fingerprint
from edge_committee.backend.tensorrt.runner import EngineLoadError, TensorRTMember

__all__ = ["BuildOptions", "EngineLoadError", "EngineMismatchError", "Fingerprint", "TensorRTMember",
           "compile_bundle", "device_members"]


def compile_bundle(*args, **kwargs):
    """Build a bundle's engines on this machine; see :func:`edge_committee.backend.tensorrt.compiler.compile_bundle`."""
    from edge_committee.backend.tensorrt.compiler import compile_bundle as _compile

    return _compile(*args, **kwargs)


def device_members(*args, **kwargs):
    """The cascade's engines as device members; see :func:`edge_committee.backend.tensorrt.adapter.device_members`."""
    from edge_committee.backend.tensorrt.adapter import device_members as _members

    return _members(*args, **kwargs)
