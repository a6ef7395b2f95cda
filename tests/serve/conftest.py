"""Fixtures for the Triton tests: the tiny committee as a 3-stage cascade, and a real server.

The server is the ``tritonserver`` that ``nvidia-pytriton`` bundles (installed by ``.ci/run``),
started on 127.0.0.1 with ports chosen at run time and stopped by its pid.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from ..conftest import LABELS, MEMBERS, linear_member, make_images

#: thresholds that spread the tiny test split over all three stages
THRESHOLDS = [0.9, 0.8]


def needs_server():
    """Skip unless the bundled server and tritonclient are installed."""
    if importlib.util.find_spec("pytriton") is None:
        pytest.skip("needs the bundled tritonserver: pip install --no-deps nvidia-pytriton==0.7.0")
    pytest.importorskip("tritonclient.http")
    pytest.importorskip("tritonclient.grpc")


@pytest.fixture(scope="session")
def tiny_cascade(tmp_path_factory) -> Path:
    """A bundle of the tiny committee whose cascade is small -> medium -> large."""
    from edge_committee.bundle import edit_bundle
    from edge_committee.pipeline import build

    root = tmp_path_factory.mktemp("tiny")
    for i, (name, (pp, noise)) in enumerate(MEMBERS.items()):
        linear_member(root / f"{name}.onnx", pp, noise, seed=i)
    for split, seed in (("val", 1), ("test", 2)):
        x, y = make_images(300, seed)
        np.savez(root / f"{split}.npz", x=x, y=y)
    spec = {"name": "tiny", "labels": LABELS,
            "members": [{"name": n, "onnx": f"{n}.onnx", "preprocessing": pp} for n, (pp, _) in MEMBERS.items()],
            "data": {"validation": {"format": "npz", "path": "val.npz"}, "test": {"format": "npz", "path": "test.npz"}},
            "budget": {"macs": "largest", "kind": "worst"}, "evaluation": {"batch_size": 64, "threads": 1}}
    (root / "committee.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    bundle = root / "bundle"
    build(root / "committee.yaml", bundle, cache_dir=root / "cache", log=lambda s: None)
    with edit_bundle(bundle) as ed:
        ed.manifest["cascade"].update(kind="cascade", members=list(MEMBERS), thresholds=THRESHOLDS)
    return bundle


@pytest.fixture(scope="session")
def tiny_images() -> np.ndarray:
    return make_images(300, 2)[0]


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())
