"""Build one engine from one ONNX file with the TensorRT Python API.

The steps are Polygraphy's loaders (``NetworkFromOnnxPath`` -> ``CreateConfig`` ->
``EngineBytesFromNetwork``) written as three functions against the raw API, so that every
TensorRT name used here is one the API-surface test checks against the real bindings of
TensorRT 10.3 and 11.x (see ``docs/tensorrt.md`` for why not Polygraphy itself).

- The network is **strongly typed**: precision comes from the ONNX file (FP32, FP16 tensors, or
  INT8 Q/DQ nodes). TensorRT 11 has no FP16/INT8 builder flags; 10.x accepts strongly typed
  networks too. The one exception is DLA on TensorRT 10.x, whose documented path is a weakly
  typed network with the FP16 (and INT8) flag: those flags are reached only through
  :func:`~edge_committee.backend.tensorrt.compat.versioned`.
- One optimization profile covers the dynamic batch: min 1, opt ``opt_batch``, max ``max_batch``.
- A timing cache (bytes) is loaded before and returned after the build, so the next member and
  the next compile on this machine reuse the tactic timings.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from edge_committee.backend.tensorrt.compat import capturing_logger, keep_broken, versioned
from edge_committee.backend.tensorrt.fingerprint import BuildOptions
from edge_committee.errors import EdgeCommitteeError

DLA_PRECISIONS = ("fp16", "int8")


class EngineBuildError(EdgeCommitteeError):
    """TensorRT refused a model or a build option; the message carries TensorRT's reason."""


@dataclasses.dataclass
class BuildResult:
    """One built engine.

    Attributes:
        engine: the serialized engine (the ``.engine`` file's bytes).
        timing_cache: the updated timing cache, serialized (None if TensorRT returned none).
        seconds: wall time of the build, s.
        inputs: ``{name: shape}`` of the network's inputs as parsed (-1 = dynamic).
        max_batch: the largest batch the engine accepts.
        typing: ``"strong"`` or ``"weak"`` (TensorRT 10.x DLA).
    """

    engine: bytes
    timing_cache: bytes | None
    seconds: float
    inputs: dict[str, tuple[int, ...]]
    max_batch: int
    typing: str


def uses_weak_typing(trt: ModuleType, options: BuildOptions) -> bool:
    """True for DLA builds on a TensorRT that still has the FP16 builder flag (10.x)."""
    return options.dla_core is not None and versioned(trt, "BuilderFlag.FP16") is not None


def network_from_onnx_path(trt: ModuleType, builder: Any, logger: Any, path: str | os.PathLike,
                           strongly_typed: bool = True) -> tuple[Any, Any]:
    """Parse ``path`` into a new network; returns ``(network, parser)`` (keep both alive until built)."""
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        problems = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            problems.append(f"node {err.node()}: {err.desc()}")
        detail = "; ".join(problems) or logger.last_error()
        raise EngineBuildError(f"TensorRT's ONNX parser refused {path}: {detail}")
    return network, parser


def batch_profile(trt: ModuleType, builder: Any, network: Any, options: BuildOptions) -> tuple[Any | None, int]:
    """The optimization profile for the dynamic batch of every input, and the largest batch.

    Inputs with a fixed leading dimension need no profile (the engine then takes that batch only).
    Any other dynamic dimension is refused: members take one fixed image size.
    """
    profile, max_batch = None, options.max_batch
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(int(d) for d in tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise EngineBuildError(f"input {tensor.name!r} has shape {shape}: only the batch (first) dimension may be "
                                   "dynamic; export the model with a fixed image size")
        if not shape or shape[0] >= 0:
            max_batch = shape[0] if shape else 1
            continue
        rest = shape[1:]
        profile = profile or builder.create_optimization_profile()
        profile.set_shape(tensor.name, (1, *rest), (min(options.opt_batch, options.max_batch), *rest),
                          (options.max_batch, *rest))
    return profile, max_batch


def create_config(trt: ModuleType, builder: Any, network: Any, options: BuildOptions, precision: str,
                  timing_cache: bytes | None = None, plugin_library: str | None = None) -> tuple[Any, int]:
    """The builder config for ``options``; returns ``(config, max_batch)``."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if options.opt_level is not None:
        config.builder_optimization_level = options.opt_level
    profile, max_batch = batch_profile(trt, builder, network, options)
    if profile is not None:
        config.add_optimization_profile(profile)
    if options.dla_core is not None:
        _configure_dla(trt, builder, config, options, precision)
    if plugin_library:  # the gate plugin updates the cascade state in place (getAliasedInput) instead of copying it
        config.set_preview_feature(trt.PreviewFeature.ALIASED_PLUGIN_IO_10_03, True)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if plugin_library:  # the engine carries the plugin library; the runtime then allows its host code
            config.plugins_to_serialize = [plugin_library]
    cache = config.create_timing_cache(timing_cache or b"")
    if not config.set_timing_cache(cache, False):
        raise EngineBuildError("TensorRT refused the bundle's timing cache (built by another TensorRT or GPU?); "
                               "delete it from the bundle's manifest or rebuild")
    return config, max_batch


def check_dla(builder: Any, options: BuildOptions, precision: str) -> None:
    """Refuse ``--dla`` where the device has no such DLA core, or for an FP32 file."""
    cores = int(builder.num_DLA_cores)
    if options.dla_core >= cores:
        have = f"has {cores} DLA core{'s' if cores != 1 else ''}" if cores else "has no DLA"
        raise EngineBuildError(
            f"--dla {options.dla_core}: this device {have} (Jetson AGX Orin and Orin NX have 2; Orin Nano, Thor and "
            f"discrete GPUs have none, and TensorRT 11.0-11.3 supports no DLA); drop --dla to build for the GPU")
    if precision not in DLA_PRECISIONS:
        raise EngineBuildError(
            f"--dla: DLA runs FP16 and INT8 only, and this member's file is {precision}; build the bundle with "
            "precision fp16 or int8, or drop --dla")


def _configure_dla(trt: ModuleType, builder: Any, config: Any, options: BuildOptions, precision: str) -> None:
    check_dla(builder, options, precision)
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = options.dla_core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if uses_weak_typing(trt, options):  # TensorRT 10.x: DLA from a weakly typed network with precision flags
        config.set_flag(versioned(trt, "BuilderFlag.FP16"))
        if precision == "int8":
            config.set_flag(versioned(trt, "BuilderFlag.INT8"))


def engine_bytes_from_network(trt: ModuleType, builder: Any, network: Any, config: Any, logger: Any,
                              what: str) -> tuple[bytes, bytes | None]:
    """Build and serialize; returns ``(engine bytes, updated timing cache bytes)``."""
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build {what}: {logger.last_error()}")
    cache = config.get_timing_cache()
    return bytes(serialized), (bytes(cache.serialize()) if cache is not None else None)


def build_engine(trt: ModuleType, onnx_path: str | os.PathLike, options: BuildOptions, precision: str = "fp32",
                 timing_cache: bytes | None = None, plugin_library: str | None = None) -> BuildResult:
    """Build one engine from ``onnx_path``.

    Args:
        trt: the full TensorRT module (:func:`~edge_committee.backend.tensorrt.compat.import_builder`).
        onnx_path: a member's FP32/FP16/INT8-Q/DQ ONNX file, or a fused cascade file.
        options: profile, workspace, optimization level, DLA, version compatibility.
        precision: the file's precision (``fp32``, ``fp16``, ``int8``): DLA needs fp16/int8, and
            TensorRT 10.x DLA builds set the matching flag.
        timing_cache: a serialized timing cache to start from (None: an empty one).
        plugin_library: a plugin library to load into TensorRT's registry *before* parsing (the
            fused cascade's CascadeGate nodes need it).
    """
    logger = capturing_logger(trt)
    start = time.perf_counter()
    if plugin_library:
        from edge_committee.gate.plugin import register_plugin

        register_plugin(trt, plugin_library)
    builder = trt.Builder(logger)
    if builder is None or logger.errors():
        keep_broken(builder)  # a builder that failed to start crashes the process when freed
        raise EngineBuildError(f"TensorRT cannot start a builder on this machine: {logger.last_error()}")
    weak = uses_weak_typing(trt, options)
    if options.dla_core is not None:  # refuse a missing DLA before spending time parsing
        check_dla(builder, options, precision)
    network, parser = network_from_onnx_path(trt, builder, logger, onnx_path, strongly_typed=not weak)
    inputs = {network.get_input(i).name: tuple(int(d) for d in network.get_input(i).shape)
              for i in range(network.num_inputs)}
    config, max_batch = create_config(trt, builder, network, options, precision, timing_cache, plugin_library)
    engine, cache = engine_bytes_from_network(trt, builder, network, config, logger, Path(onnx_path).name)
    del parser  # the parser owns the ONNX weights the network points to: keep it alive until here
    return BuildResult(engine, cache, time.perf_counter() - start, inputs, max_batch, "weak" if weak else "strong")
