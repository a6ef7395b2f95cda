"""What an engine was built from and for, and whether it can run on this machine.

A TensorRT engine runs only with the TensorRT version and on the GPU it was built for (users hit
this constantly: NVIDIA/TensorRT #292), so every engine in a bundle carries a :class:`Fingerprint`
in its manifest entry, and its file name says the GPU and TensorRT version
(``members/phi0.fp16.sm87.trt10.3.engine``). Loading checks the fingerprint before TensorRT
sees the file and fails with one line naming both fingerprints and the command that fixes it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edge_committee.backend.tensorrt.compat import short_version, version_tuple
from edge_committee.backend.tensorrt.gpu import GpuInfo
from edge_committee.errors import EdgeCommitteeError


class EngineMismatchError(EdgeCommitteeError):
    """An engine was built for another TensorRT, GPU, ONNX file or plugin library."""


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """How ``edge-committee compile`` builds an engine (all recorded in the fingerprint).

    Attributes:
        max_batch: largest batch of the optimization profile (default 64).
        opt_batch: the batch TensorRT tunes for (default 8; clipped to ``max_batch``).
        workspace_mb: workspace memory-pool limit, MiB (default 1024).
        opt_level: builder optimization level 0..5 (None: TensorRT's default, 3).
        dla_core: DLA core to build for, with GPU fallback (None: the GPU).
        version_compatible: build a version-compatible engine (runs on later TensorRT of the
            same major version, and in the lean runtime).
    """

    max_batch: int = 64
    opt_batch: int = 8
    workspace_mb: int = 1024
    opt_level: int | None = None
    dla_core: int | None = None
    version_compatible: bool = False

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise EdgeCommitteeError(f"--max-batch {self.max_batch}: expected at least 1")
        if not 1 <= self.opt_batch:
            raise EdgeCommitteeError(f"--opt-batch {self.opt_batch}: expected at least 1")
        if self.opt_batch > self.max_batch:
            raise EdgeCommitteeError(f"--opt-batch {self.opt_batch} is larger than --max-batch {self.max_batch}; "
                                     "lower it or raise --max-batch")
        if self.workspace_mb < 1:
            raise EdgeCommitteeError(f"--workspace-mb {self.workspace_mb}: expected at least 1 MiB")
        if self.opt_level is not None and not 0 <= self.opt_level <= 5:
            raise EdgeCommitteeError(f"--opt-level {self.opt_level}: TensorRT's builder levels are 0..5")
        if self.dla_core is not None and self.dla_core < 0:
            raise EdgeCommitteeError(f"--dla {self.dla_core}: a DLA core number is 0 or more")
        if self.dla_core is not None and self.version_compatible:  # TensorRT rejects the pair after parsing
            raise EdgeCommitteeError(f"--dla {self.dla_core} with --version-compatible: TensorRT builds no "
                                     "version-compatible engine for DLA; drop one of the two")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BuildOptions":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def cli_flags(self) -> str:
        """The ``compile`` flags that rebuild with these options (defaults omitted)."""
        default, parts = BuildOptions(), []
        for name, flag in (("max_batch", "--max-batch"), ("opt_batch", "--opt-batch"),
                           ("workspace_mb", "--workspace-mb"), ("opt_level", "--opt-level"), ("dla_core", "--dla")):
            value = getattr(self, name)
            if value is not None and value != getattr(default, name):
                parts.append(f"{flag} {value}")
        if self.version_compatible:
            parts.append("--version-compatible")
        return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What an engine depends on.

    Attributes:
        tensorrt: the full TensorRT version that built it (``"10.3.0.26"``).
        gpu: the GPU's name (``"Orin"``).
        compute_capability: ``"8.7"``.
        onnx_sha256: the ONNX file it was built from.
        options: the :class:`BuildOptions`, as a dict.
        plugin_sha256: the CascadeGate plugin library it was parsed with (fused cascades), else None.
        typing: ``"strong"`` (precision from the ONNX) or ``"weak"`` (TensorRT 10.x DLA: precision flags).
    """

    tensorrt: str
    gpu: str
    compute_capability: str
    onnx_sha256: str
    options: dict[str, Any]
    plugin_sha256: str | None = None
    typing: str = "strong"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Fingerprint":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    @property
    def build_options(self) -> BuildOptions:
        return BuildOptions.from_dict(self.options)

    def machine(self) -> str:
        """``"TensorRT 10.3.0.26 on Orin (sm87)"``."""
        return describe_machine(self.tensorrt, GpuInfo(self.gpu, self.compute_capability))

    def suffix(self) -> str:
        """The part of the file name that says where it runs: ``sm87.trt10.3[.dla0][.vc]``."""
        opts = self.build_options
        parts = [GpuInfo(self.gpu, self.compute_capability).sm, f"trt{short_version(self.tensorrt)}"]
        if opts.dla_core is not None:
            parts.append(f"dla{opts.dla_core}")
        if opts.version_compatible:
            parts.append("vc")
        return ".".join(parts)


def describe_machine(tensorrt: str, gpu: GpuInfo) -> str:
    return f"TensorRT {tensorrt} on {gpu.name} ({gpu.sm})"


def engine_file(member: str, precision: str, fp: Fingerprint) -> str:
    """The bundle-relative file of a member's engine: ``members/phi0.fp16.sm87.trt10.3.engine``.

    ``member`` is the manifest name (``phi0`` or ``phi0.int8``); its precision suffix is not repeated.
    """
    base = member[: -len(precision) - 1] if member.endswith("." + precision) else member
    return f"members/{base}.{precision}.{fp.suffix()}.engine"


def cascade_engine_file(fp: Fingerprint) -> str:
    """The bundle-relative file of a fused-cascade engine: ``cascade.sm87.trt10.3.engine``."""
    return f"cascade.{fp.suffix()}.engine"


def runs_here(fp: Fingerprint, tensorrt: str, gpu: GpuInfo) -> str | None:
    """Why an engine with fingerprint ``fp`` cannot run with ``tensorrt`` on ``gpu``; None if it can.

    The GPU must match (name and compute capability). TensorRT must be the same version
    (major.minor.patch), or for a version-compatible engine the same major and not older.
    """
    if (fp.gpu, fp.compute_capability) != (gpu.name, gpu.compute_capability):
        return "another GPU"
    built, here = version_tuple(fp.tensorrt), version_tuple(tensorrt)
    if fp.build_options.version_compatible:
        if built[0] != here[0] or here[:3] < built[:3]:
            return ("a TensorRT it is not compatible with (version-compatible engines run on the same major "
                    "version, same or newer)")
        return None
    if built[:3] != here[:3]:
        return "another TensorRT version"
    return None
