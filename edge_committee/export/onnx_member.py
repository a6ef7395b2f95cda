"""Plain ONNX members: check the input against the preprocessing, bundle external data.

A member's ONNX input must take what its preprocessing makes: ``(batch, C, H, W)`` for
``NCHW`` (``(batch, H, W, C)`` for ``NHWC``), with a dynamic batch or a fixed batch of 1 (run
one sample at a time). Anything else fails at once with one line naming the member, both
shapes and the fix, before any evaluation runs.

ONNX files that keep their weights in external data files (``model.onnx`` + ``model.onnx.data``,
as torch's dynamo exporter writes models over 2 GB) are re-saved next to the bundled member as
``<member>.onnx`` + ``<member>.onnx.data``; the bundle's manifest lists and checksums both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from edge_committee._lazy import require
from edge_committee.errors import SpecError


@dataclasses.dataclass(frozen=True)
class MemberInput:
    """The member's one graph input: its name and fixed batch (None when dynamic)."""

    name: str
    shape: tuple  #: dims as ints, or strings for symbolic ones
    fixed_batch: int | None


def read_input(path: str | os.PathLike, member: str) -> MemberInput:
    """The one non-initializer input of an ONNX file (weights are not loaded)."""
    onnx = require("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise SpecError(
            f"member {member!r}: {Path(path).name} has {len(inputs)} inputs "
            f"({', '.join(i.name for i in inputs)}); a member takes exactly one image tensor"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
    batch = shape[0] if shape and isinstance(shape[0], int) else None
    return MemberInput(inputs[0].name, shape, batch)


def check_member_input(path: str | os.PathLike, preprocessing: Any, member: str) -> MemberInput:
    """Compare the ONNX input with ``preprocessing.input_shape``; raise one clear SpecError.

    Returns the input (a fixed batch of 1 is allowed: the runner feeds one sample at a time).
    """
    info = read_input(path, member)
    want = tuple(preprocessing.input_shape("batch"))
    got = info.shape
    name = Path(path).name
    if info.fixed_batch is not None and info.fixed_batch != 1:
        raise SpecError(
            f"member {member!r}: {name} input {_fmt(got)} has a fixed batch of {info.fixed_batch}; "
            "re-export it with a dynamic batch (torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}}))"
        )
    if len(got) == len(want) and all(isinstance(g, str) or g == w for g, w in zip(got[1:], want[1:])):
        return info
    raise SpecError(
        f"member {member!r}: {name} takes input {_fmt(got)} but its preprocessing makes {_fmt(want)}; "
        f"{_fix(got, want, preprocessing)}"
    )


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _fix(got: tuple, want: tuple, pp: Any) -> str:
    """The preprocessing change that makes ``want`` equal ``got`` (or a generic hint)."""
    if len(got) != 4:
        return f"a member takes a 4-D image tensor ({pp.layout}); check that this is an image classifier"
    other = "NHWC" if pp.layout == "NCHW" else "NCHW"
    c_axis, hw = (1, slice(2, 4)) if pp.layout == "NCHW" else (3, slice(1, 3))
    o_axis = 3 if pp.layout == "NCHW" else 1
    if got[o_axis] in (1, 3) and got[c_axis] not in (1, 3):
        return f"set preprocessing layout: {other}"
    fixes = []
    c = got[c_axis]
    if isinstance(c, int) and c != pp.channels:
        fixes.append("color: gray" if c == 1 else "color: rgb" if c == 3 else f"an input of {c} channels is not an image")
    size = got[hw]
    if all(isinstance(d, int) for d in size) and tuple(size) != tuple(want[hw]):
        fixes.append(f"size: [{size[0]}, {size[1]}]")
    return "set preprocessing " + ", ".join(fixes) if fixes else "check the member's preprocessing"


def has_external_data(path: str | os.PathLike) -> bool:
    onnx = require("onnx")
    helper = require("onnx.external_data_helper")
    proto = onnx.load(str(path), load_external_data=False)
    return any(helper.uses_external_data(t) for t in helper._get_all_tensors(proto))


def external_data_files(path: str | os.PathLike) -> list[Path]:
    """The external data files an ONNX file refers to (sorted, existing or not)."""
    onnx = require("onnx")
    helper = require("onnx.external_data_helper")
    proto = onnx.load(str(path), load_external_data=False)
    locs = set()
    for t in helper._get_all_tensors(proto):
        if helper.uses_external_data(t):
            info = {e.key: e.value for e in t.external_data}
            locs.add(info.get("location", ""))
    return sorted(Path(path).parent / loc for loc in locs if loc)


def copy_member(src: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Copy an ONNX member to ``dest``; external data is re-saved as ``dest.name + '.data'``.

    Returns every file written (the ONNX file first).
    """
    dest = Path(dest)
    if not has_external_data(src):
        shutil.copyfile(src, dest)
        return [dest]
    onnx = require("onnx")
    proto = onnx.load(str(src), load_external_data=True)  # the checker already refused ../ paths
    data = dest.with_name(dest.name + ".data")
    onnx.save_model(proto, str(dest), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    return [dest, data]


def model_digest(path: str | os.PathLike) -> str:
    """sha256 of an ONNX file and the external data files it refers to (the cache's model key)."""
    from edge_committee._util import sha256_file

    extra = external_data_files(path)  # [] without external data
    if not extra:
        return sha256_file(path)
    h = hashlib.sha256(sha256_file(path).encode())
    for p in extra:
        h.update(f"{p.name}:{sha256_file(p)}".encode())
    return h.hexdigest()
