"""Stream test fixtures: the tiny three-member committee of ``tests/conftest.py`` built once per
session (members differ in input size, colour, channel order and layout)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
if str(Path(__file__).resolve().parent) not in sys.path:  # stream_helpers, publisher
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_helpers import ROOT


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A built bundle of the tiny committee (members differ in size, colour, layout)."""
    import yaml

    from edge_committee.pipeline import build

    d = tmp_path_factory.mktemp("tiny")
    for i, (name, (pp, noise)) in enumerate(ROOT.MEMBERS.items()):
        ROOT.linear_member(d / f"{name}.onnx", pp, noise, seed=i)
    for split, seed in (("val", 1), ("test", 2)):
        x, y = ROOT.make_images(300, seed)
        np.savez(d / f"{split}.npz", x=x, y=y)
    spec = {"name": "tiny", "labels": ROOT.LABELS,
            "members": [{"name": n, "onnx": f"{n}.onnx", "preprocessing": pp} for n, (pp, _) in ROOT.MEMBERS.items()],
            "data": {"validation": {"format": "npz", "path": "val.npz"}, "test": {"format": "npz", "path": "test.npz"}},
            "budget": {"macs": "largest", "kind": "worst"}, "selection": {"max_members": 3},
            "evaluation": {"batch_size": 64, "threads": 1}}
    (d / "committee.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    build(d / "committee.yaml", d / "bundle", cache_dir=d / "cache", log=lambda s: None)
    return d / "bundle"


@pytest.fixture(scope="session")
def model(tiny_bundle):
    from edge_committee.api import load

    with load(tiny_bundle, threads=1) as m:
        yield m
