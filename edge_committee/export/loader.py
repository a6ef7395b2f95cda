"""Build a PyTorch member from a factory string and a weights file.

A factory is ``"package.module:callable"`` (imported normally) or ``"path/to/file.py:callable"``
(a file path, relative paths resolved against ``base_dir``, loaded under a unique module name so
two members' ``model.py`` files never collide). The callable may be a dotted attribute path
(``"zoo.py:Builders.small"``). Weights are read as tensors only: ``.safetensors`` with
safetensors, ``.pt``/``.pth``/``.bin`` with ``torch.load(weights_only=True)``; a file that holds
pickled Python objects (a whole saved module) is refused, never unpickled.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import itertools
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from edge_committee._lazy import require
from edge_committee.errors import EdgeCommitteeError

TORCH_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
#: keys under which training checkpoints commonly nest the state dict
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model")
_module_counter = itertools.count()


def load_torch_member(
    factory: str,
    kwargs: Mapping[str, Any] | None = None,
    weights: str | os.PathLike | None = None,
    base_dir: str | os.PathLike | None = None,
) -> Any:
    """Call ``factory(**kwargs)``, load ``weights`` into it strictly, and return it in eval mode.

    Args:
        factory: ``"module.path:callable"`` or ``"file.py:callable"``.
        kwargs: keyword arguments for the callable (default none).
        weights: a ``.safetensors``, ``.pt``, ``.pth`` or ``.bin`` state dict; None keeps the
            factory's own initialisation.
        base_dir: folder that relative factory files and weights are resolved against
            (default: the current directory), normally the spec file's folder.

    Raises:
        EdgeCommitteeError: a missing factory file, module or callable, bad kwargs, a result that
            is not a ``torch.nn.Module``, a missing or unreadable weights file, or state-dict keys
            or shapes that do not match the model.
    """
    torch = require("torch")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    fn = resolve_factory(factory, base)
    kwargs = dict(kwargs or {})
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as exc:
        raise EdgeCommitteeError(f"factory '{factory}' does not accept kwargs {kwargs}: {exc}") from None
    except ValueError:  # some builtins have no signature; let the call itself decide
        pass
    model = fn(**kwargs)
    if not isinstance(model, torch.nn.Module):
        raise EdgeCommitteeError(
            f"factory '{factory}' must return a torch.nn.Module; it returned {type(model).__name__}"
        )
    if weights is not None:
        path = _resolve(weights, base)
        _load_state_dict(model, read_state_dict(path), path)
    return model.eval()


def resolve_factory(factory: str, base_dir: str | os.PathLike | None = None) -> Callable[..., Any]:
    """The callable named by ``factory`` ("module.path:callable" or "file.py:callable")."""
    target, sep, attr = str(factory).rpartition(":")
    if not sep or not target or not attr:
        raise EdgeCommitteeError(
            f"factory '{factory}' must look like 'package.module:callable' or 'file.py:callable'"
        )
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if _is_file_target(target):
        module = _import_file(_resolve(target, base), factory)
    else:
        module = _import_module(target, factory)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise EdgeCommitteeError(
                f"factory '{factory}': {getattr(module, '__file__', target)} has no attribute "
                f"'{attr}'"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise EdgeCommitteeError(f"factory '{factory}': '{attr}' is not callable")
    return obj


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Tensors of a ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` file, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise EdgeCommitteeError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        st = require("safetensors.torch")
        try:
            return dict(st.load_file(str(path), device="cpu"))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise EdgeCommitteeError(f"cannot read weights {path}: {exc}") from None
    if suffix in TORCH_WEIGHT_SUFFIXES:
        return _read_torch_state_dict(path)
    raise EdgeCommitteeError(
        f"weights file {path} has suffix '{path.suffix}'; expected {SAFETENSORS_SUFFIX} or "
        f"{', '.join(TORCH_WEIGHT_SUFFIXES)}"
    )


def _read_torch_state_dict(path: Path) -> dict[str, Any]:
    torch = require("torch")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for pickled objects, RuntimeError for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeCommitteeError(
            f"cannot read weights {path} as tensors only (torch.load weights_only=True): {first}; "
            "save model.state_dict() rather than the model object"
        ) from None
    if isinstance(obj, Mapping) and not _all_tensors(obj):
        for key in _NESTED_STATE_KEYS:
            if isinstance(obj.get(key), Mapping) and _all_tensors(obj[key]):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not _all_tensors(obj):
        raise EdgeCommitteeError(
            f"weights {path} is not a state dict (a mapping of names to tensors); "
            "save model.state_dict()"
        )
    return dict(obj)


def _all_tensors(obj: Mapping) -> bool:
    torch = require("torch")
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _load_state_dict(model: Any, state: dict[str, Any], path: Path) -> None:
    expected = set(model.state_dict().keys())
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - expected)
    if missing or unexpected:
        raise EdgeCommitteeError(_key_mismatch_message(path, missing, unexpected))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shape mismatches
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        detail = lines[0] if lines else str(exc).strip().splitlines()[0]
        raise EdgeCommitteeError(f"weights {path} do not fit the model: {detail}") from None


def _key_mismatch_message(path: Path, missing: list[str], unexpected: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), first: {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), first: {', '.join(unexpected[:3])}")
    hint = "check that the factory and kwargs build the architecture the weights were saved from"
    if unexpected and all(k.startswith("module.") for k in unexpected):
        hint = "the weights were saved from a DataParallel wrapper; strip the 'module.' prefix"
    return f"weights {path} do not match the model: {'; '.join(parts)}; {hint}"


def _is_file_target(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _resolve(path: str | os.PathLike, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _import_file(path: Path, factory: str) -> Any:
    if not path.is_file():
        raise EdgeCommitteeError(f"factory '{factory}': file not found: {path}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"_edge_committee_factory_{path.stem}_{digest}_{next(_module_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EdgeCommitteeError(f"factory '{factory}': cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import_module(target: str, factory: str) -> Any:
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        # only the factory's own module being absent is the user's mistake; a missing
        # dependency inside it keeps its traceback
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise EdgeCommitteeError(
                f"factory '{factory}': no module named '{exc.name}' (is it installed or on "
                "PYTHONPATH? a file path must end in .py)"
            ) from None
        raise
