"""Bundle test fixtures: one tiny bundle built per session, copied fresh for each test.

A build costs about a second on 2 cores; a copy costs milliseconds, so every test gets its own
bundle to damage. ``resign`` re-computes every checksum of a tampered bundle, manifest digest
included, as anyone with write access to the bundle can: tests that use it check what the schema
and path checks refuse on their own.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

_ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
if str(Path(__file__).resolve().parent) not in sys.path:  # bundle_cases
    sys.path.insert(0, str(Path(__file__).resolve().parent))


def _root_helpers():
    """tests/conftest.py as a module (its tiny-committee helpers), imported by path."""
    spec = importlib.util.spec_from_file_location("_ec_tests_root_conftest", _ROOT_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def session_bundle(tmp_path_factory) -> Path:
    """A built tiny bundle (3 plain ONNX members), shared: copy it before changing anything."""
    import numpy as np
    import yaml

    from edge_committee.pipeline import build

    h = _root_helpers()
    root = tmp_path_factory.mktemp("tiny")
    for i, (name, (pp, noise)) in enumerate(h.MEMBERS.items()):
        h.linear_member(root / f"{name}.onnx", pp, noise, seed=i)
    for split, seed in (("val", 1), ("test", 2)):
        x, y = h.make_images(200, seed)
        np.savez(root / f"{split}.npz", x=x, y=y)
    np.save(root / "batch.npy", x[:8])
    spec = {
        "name": "tiny",
        "labels": h.LABELS,
        "members": [{"name": n, "onnx": f"{n}.onnx", "preprocessing": pp} for n, (pp, _) in h.MEMBERS.items()],
        "data": {"validation": {"format": "npz", "path": "val.npz"}, "test": {"format": "npz", "path": "test.npz"}},
        "budget": {"macs": "largest", "kind": "mean"},  # a cascade of two or three members
        "selection": {"max_members": 3, "order": "cheapest_first"},
        "evaluation": {"batch_size": 64, "threads": 1},
    }
    (root / "committee.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    manifest = build(root / "committee.yaml", root / "bundle", cache_dir=root / "cache", log=lambda s: None)
    assert manifest["cascade"]["kind"] == "cascade" and len(manifest["cascade"]["members"]) >= 2
    return root / "bundle"


@pytest.fixture
def bundle(session_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the session bundle, with ``test.npz`` and ``batch.npy`` (8 test images) beside it."""
    out = tmp_path / "bundle"
    shutil.copytree(session_bundle, out, symlinks=True)
    for name in ("test.npz", "batch.npy"):
        shutil.copy(session_bundle.parent / name, tmp_path / name)
    return out


@pytest.fixture
def cli(capsys):
    """Run the CLI: returns (exit code, stdout, stderr)."""
    from edge_committee.cli.main import main

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
