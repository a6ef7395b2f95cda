"""A recording fake of the ``tensorrt`` module: the call sequence, the options and every error path.

Strict: each fake class has only the attributes the real bindings register under the same class
name (properties are refused on assignment unless declared), so code that calls anything else
fails here. :func:`surface` lists every name the fake offers, and the API-surface test checks each
against the real bindings of every supported TensorRT version. A serialized "engine" is
``MAGIC`` + JSON describing its tensors, so the fake runtime deserializes what the fake builder
built and refuses anything else, as TensorRT does (None plus an error on its logger).
"""

from __future__ import annotations

import enum
import json
import types
from typing import Any

MAGIC = b"FAKETRT1"


class Knobs:
    """How the fake behaves; tests set these to reach each error path."""

    def __init__(self, version: str = "10.3.0.26", dla_cores: int = 0) -> None:
        self.version = version
        self.dla_cores = dla_cores
        #: the parsed network's inputs and outputs: name -> (shape, dtype name)
        self.inputs: dict[str, tuple[tuple[int, ...], str]] = {"input": ((-1, 1, 6, 6), "FLOAT")}
        self.outputs: dict[str, tuple[tuple[int, ...], str]] = {"logits": ((-1, 4), "FLOAT")}
        self.parse_errors: list[tuple[int, str]] = []  #: (node, description) -> parse fails
        self.build_error: str | None = None  #: build_serialized_network returns None, logging this
        self.builds_before_error = 0  #: how many builds succeed before ``build_error`` applies
        self.builds = 0
        self.runtime_error: str | None = None  #: Runtime() logs this (no GPU)
        self.builder_error: str | None = None
        self.timing_cache_ok = True
        self.set_shape_ok = True
        self.execute_ok = True
        self.context_ok = True


class Strict:
    """Refuses to set attributes that are not declared in ``PROPS``."""

    PROPS: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in self.PROPS:
            raise AttributeError(f"fake tensorrt: {type(self).__name__} has no settable attribute {name!r}")
        if not name.startswith("_"):
            self._rec(f"{type(self).__name__}.{name}=", value)
        object.__setattr__(self, name, value)

    def _rec(self, name: str, *args: Any) -> None:
        self._fake.calls.append((name, args))


def make_fake(knobs: Knobs | None = None) -> types.ModuleType:
    """A fresh fake ``tensorrt`` module with ``knobs`` (also at ``module.knobs``); calls in ``module.calls``."""
    k = knobs or Knobs()
    major = int(k.version.split(".")[0])
    fake = types.ModuleType("tensorrt")
    fake.__version__ = k.version
    fake.knobs, fake.calls = k, []

    class ILogger:
        class Severity(enum.IntEnum):
            INTERNAL_ERROR = 0
            ERROR = 1
            WARNING = 2
            INFO = 3
            VERBOSE = 4

        def __init__(self) -> None:
            pass

        def log(self, severity, msg) -> None:
            raise NotImplementedError

    flags = ["GPU_FALLBACK", "VERSION_COMPATIBLE"] + (["FP16", "INT8"] if major < 11 else [])
    BuilderFlag = enum.IntEnum("BuilderFlag", {n: i for i, n in enumerate(flags)})
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
    MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    PreviewFeature = enum.IntEnum("PreviewFeature", {"ALIASED_PLUGIN_IO_10_03": 0})
    ExecutionContextAllocationStrategy = enum.IntEnum("ExecutionContextAllocationStrategy", {"USER_MANAGED": 2})
    DeviceType = enum.IntEnum("DeviceType", {"GPU": 0, "DLA": 1})
    TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    DataType = enum.IntEnum("DataType", {n: i for i, n in enumerate(
        ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "INT64"])})

    def rec(name: str, *args: Any) -> None:
        fake.calls.append((name, args))

    class _Base(Strict):
        _fake = fake

    class ITensor(_Base):
        def __init__(self, name: str, shape: tuple[int, ...]) -> None:
            object.__setattr__(self, "name", name)
            object.__setattr__(self, "shape", shape)

    class INetworkDefinition(_Base):
        def __init__(self, flags: int) -> None:
            self._flags = flags
            self._inputs = [ITensor(n, s) for n, (s, _) in k.inputs.items()]

        @property
        def num_inputs(self) -> int:
            return len(self._inputs)

        def get_input(self, i: int) -> ITensor:
            return self._inputs[i]

    class ParserError:
        def __init__(self, node: int, desc: str) -> None:
            self._node, self._desc = node, desc

        def node(self) -> int:
            return self._node

        def desc(self) -> str:
            return self._desc

    class OnnxParser(_Base):
        def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
            rec("OnnxParser", network._flags)
            self._network, self._logger = network, logger

        def parse_from_file(self, path: str) -> bool:
            rec("OnnxParser.parse_from_file", path)
            self._network._parsed = path
            return not k.parse_errors

        @property
        def num_errors(self) -> int:
            return len(k.parse_errors)

        def get_error(self, i: int) -> ParserError:
            return ParserError(*k.parse_errors[i])

    class IOptimizationProfile(_Base):
        def __init__(self) -> None:
            self._shapes: dict[str, tuple] = {}

        def set_shape(self, name, min, opt, max) -> None:  # noqa: A002 - the real keyword names
            rec("IOptimizationProfile.set_shape", name, tuple(min), tuple(opt), tuple(max))
            self._shapes[name] = (tuple(min), tuple(opt), tuple(max))

    class IHostMemory(bytes):
        pass

    class ITimingCache(_Base):
        def __init__(self, data: bytes) -> None:
            self._data = bytes(data)

        def serialize(self) -> IHostMemory:
            return IHostMemory(self._data)

    class IBuilderConfig(_Base):
        PROPS = ("builder_optimization_level", "default_device_type", "DLA_core", "plugins_to_serialize")

        def __init__(self) -> None:
            self._flags, self._profiles, self._cache = set(), [], None

        def set_memory_pool_limit(self, pool, size: int) -> None:
            rec("IBuilderConfig.set_memory_pool_limit", pool, size)

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            rec("IBuilderConfig.add_optimization_profile", dict(profile._shapes))
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def set_flag(self, flag) -> None:
            if flag is None:
                raise TypeError("set_flag(): incompatible function arguments (None)")
            rec("IBuilderConfig.set_flag", flag.name)
            self._flags.add(flag.name)

        def set_preview_feature(self, feature, enable: bool) -> None:
            rec("IBuilderConfig.set_preview_feature", feature.name, bool(enable))

        def create_timing_cache(self, serialized) -> ITimingCache:
            rec("IBuilderConfig.create_timing_cache", bytes(serialized))
            return ITimingCache(serialized)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            rec("IBuilderConfig.set_timing_cache", ignore_mismatch)
            self._cache = cache
            return k.timing_cache_ok

        def get_timing_cache(self) -> ITimingCache | None:
            return self._cache

    class Builder(_Base):
        def __init__(self, logger: ILogger) -> None:
            rec("Builder")
            self._logger = logger
            if k.builder_error:
                logger.log(ILogger.Severity.ERROR, k.builder_error)

        @property
        def num_DLA_cores(self) -> int:
            return k.dla_cores

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            rec("Builder.create_network", flags)
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            rec("Builder.create_builder_config")
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network, config) -> IHostMemory | None:
            rec("Builder.build_serialized_network", sorted(config._flags))
            k.builds += 1
            if k.build_error and k.builds > k.builds_before_error:
                self._logger.log(ILogger.Severity.ERROR, k.build_error)
                return None
            if config._cache is not None:  # the build "times" one more tactic
                config._cache._data += b"t"
            desc = {"tensors": {**{n: [list(s), d, "INPUT"] for n, (s, d) in k.inputs.items()},
                                **{n: [list(s), d, "OUTPUT"] for n, (s, d) in k.outputs.items()}},
                    "profiles": [{n: [list(x) for x in v] for n, v in p._shapes.items()} for p in config._profiles],
                    "flags": sorted(config._flags), "strongly_typed": bool(network._flags & 2)}
            return IHostMemory(MAGIC + json.dumps(desc).encode())

    class IExecutionContext(_Base):
        def __init__(self, engine: "ICudaEngine") -> None:
            self._engine, self._shapes, self._addr = engine, {}, {}

        def set_input_shape(self, name: str, shape) -> bool:
            rec("IExecutionContext.set_input_shape", name, tuple(shape))
            self._shapes[name] = tuple(shape)
            return k.set_shape_ok

        def get_tensor_shape(self, name: str) -> tuple:
            shape = self._engine.get_tensor_shape(name)
            batch = next(iter(self._shapes.values()))[0] if self._shapes else shape[0]
            return (batch, *shape[1:]) if shape and shape[0] < 0 else shape

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            rec("IExecutionContext.set_tensor_address", name, ptr)
            self._addr[name] = ptr
            return True

        def set_device_memory(self, ptr: int, size: int) -> None:
            rec("IExecutionContext.set_device_memory", ptr, size)

        def execute_async_v3(self, stream_handle: int) -> bool:
            rec("IExecutionContext.execute_async_v3", stream_handle)
            return k.execute_ok

    class ICudaEngine(_Base):
        def __init__(self, desc: dict) -> None:
            self._desc = desc
            self._names = list(desc["tensors"])

        @property
        def num_io_tensors(self) -> int:
            return len(self._names)

        def get_tensor_name(self, i: int) -> str:
            return self._names[i]

        def get_tensor_mode(self, name: str):
            return TensorIOMode[self._desc["tensors"][name][2]]

        def get_tensor_shape(self, name: str) -> tuple:
            return tuple(self._desc["tensors"][name][0])

        def get_tensor_dtype(self, name: str):
            return DataType[self._desc["tensors"][name][1]]

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
            return [tuple(x) for x in self._desc["profiles"][profile_index][name]]

        @property
        def device_memory_size_v2(self) -> int:
            return 4096

        def create_execution_context(self, strategy=None) -> IExecutionContext | None:
            rec("ICudaEngine.create_execution_context", *([strategy.name] if strategy is not None else []))
            return IExecutionContext(self) if k.context_ok else None

    class Runtime(_Base):
        PROPS = ("engine_host_code_allowed",)

        def __init__(self, logger: ILogger) -> None:
            rec("Runtime")
            self._logger = logger
            if k.runtime_error:
                logger.log(ILogger.Severity.ERROR, k.runtime_error)

        def deserialize_cuda_engine(self, serialized) -> ICudaEngine | None:
            rec("Runtime.deserialize_cuda_engine", len(serialized))
            if k.runtime_error:
                raise AssertionError("the fake runtime crashed: TensorRT would segfault on a failed runtime")
            data = bytes(serialized)
            if not data.startswith(MAGIC):
                self._logger.log(ILogger.Severity.ERROR, "Serialization assertion magicTagRead == kMAGIC_TAG failed.")
                return None
            return ICudaEngine(json.loads(data[len(MAGIC):]))

    class IPluginCreator:
        pass

    class IPluginRegistry:
        def load_library(self, path: str):
            rec("IPluginRegistry.load_library", path)
            return object()

        def get_creator(self, name: str, version: str, namespace: str = ""):
            rec("IPluginRegistry.get_creator", name, version, namespace)
            return IPluginCreator()

    registry = IPluginRegistry()

    def get_plugin_registry() -> IPluginRegistry:
        return registry

    for obj in (ILogger, BuilderFlag, NetworkDefinitionCreationFlag, MemoryPoolType, PreviewFeature,
                ExecutionContextAllocationStrategy, DeviceType, TensorIOMode,
                DataType, ITensor, INetworkDefinition, ParserError, OnnxParser, IOptimizationProfile, IHostMemory,
                ITimingCache, IBuilderConfig, Builder, IExecutionContext, ICudaEngine, Runtime, IPluginRegistry,
                IPluginCreator, get_plugin_registry):
        setattr(fake, obj.__name__, obj)
    return fake


#: fake classes whose own names are only the fake's plumbing (IHostMemory is a bytes subclass:
#: the real one is read through the buffer protocol, no name)
_SKIP_CLASSES = {"IHostMemory"}
_ENUMS = ("BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType", "PreviewFeature", "DeviceType",
          "TensorIOMode", "DataType", "ExecutionContextAllocationStrategy")


def surface(fake: types.ModuleType) -> dict[str, set[str]]:
    """Every name the fake offers: ``{"": module names, "Class": member names, ...}``."""
    out: dict[str, set[str]] = {"": {n for n in vars(fake) if not n.startswith("_") and n not in ("knobs", "calls")}}
    out[""].add("__version__")
    for cls_name in sorted(out[""]):
        obj = getattr(fake, cls_name)
        if not isinstance(obj, type) or cls_name in _SKIP_CLASSES:
            continue
        if cls_name in _ENUMS:
            out[cls_name] = set(obj.__members__)
            continue
        names = {n for n in vars(obj) if not n.startswith("_") and n != "PROPS"} | set(getattr(obj, "PROPS", ()))
        if cls_name == "ILogger":
            names |= {"Severity"}
            out["ILogger.Severity"] = set(obj.Severity.__members__)
        if cls_name == "ITensor":
            names |= {"name", "shape"}
        out[cls_name] = names
    return out
