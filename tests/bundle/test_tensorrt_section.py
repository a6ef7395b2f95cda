"""The manifest's ``tensorrt`` section is schema-checked like the rest (t3 LOW #11, T5: a tampered,
re-digested section gave AttributeError/KeyError/TypeError tracebacks at ``--backend tensorrt``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_committee.bundle import read_manifest
from edge_committee.bundle.manifest import DIGEST_KEY, manifest_digest
from edge_committee.errors import BundleError

FP = {"tensorrt": "10.3.0.26", "gpu": "Orin", "compute_capability": "8.7", "onnx_sha256": "0" * 64,
      "options": {"max_batch": 64, "opt_batch": 8, "workspace_mb": 1024, "opt_level": None, "dla_core": None,
                  "version_compatible": False}}


def _engine(member: str, **over) -> dict:
    e = {"member": member, "kind": "member", "file": f"members/{member}.sm87.trt10.3.engine", "precision": "fp32",
         "fingerprint": json.loads(json.dumps(FP)), "input": "input", "max_batch": 64}
    e.update(over)
    return e


def _tamper(bundle: Path, section) -> None:
    path = bundle / "manifest.json"
    doc = json.loads(path.read_text())
    doc["tensorrt"] = section
    doc[DIGEST_KEY] = manifest_digest(doc)
    path.write_text(json.dumps(doc))


def test_a_well_formed_section_passes(bundle: Path):
    member = read_manifest(bundle)["members"][0]["name"]
    _tamper(bundle, {"engines": [_engine(member)], "timing_caches": {"sm87.trt10.3": "timing.cache"}})
    read_manifest(bundle, verify=False)


@pytest.mark.parametrize("edit, field", [
    (lambda m: "x", "tensorrt must be"),
    (lambda m: {"engines": "x"}, "tensorrt.engines must be"),
    (lambda m: {"engines": [1]}, "tensorrt.engines[0] must be"),
    (lambda m: {"engines": [{k: v for k, v in _engine(m).items() if k != "fingerprint"}]},
     "tensorrt.engines[0].fingerprint must be"),
    (lambda m: {"engines": [_engine(m, fingerprint={})]}, "tensorrt.engines[0].fingerprint.tensorrt must be"),
    (lambda m: {"engines": [_engine(m, fingerprint={**FP, "options": "fast"})]},
     "tensorrt.engines[0].fingerprint.options must be"),
    (lambda m: {"engines": [_engine(m, fingerprint={**FP, "options": {"max_batch": "64"}})]},
     "fingerprint.options.max_batch must be"),
    (lambda m: {"engines": [_engine("ghost")]}, "tensorrt.engines[0].member must be"),
    (lambda m: {"engines": [_engine(m, file=7)]}, "tensorrt.engines[0].file must be"),
    (lambda m: {"engines": [_engine(m, kind="whole")]}, "tensorrt.engines[0].kind must be"),
    (lambda m: {"engines": [], "timing_caches": [1]}, "tensorrt.timing_caches must be"),
])
def test_a_malformed_section_is_one_bundle_error(bundle: Path, edit, field):
    member = read_manifest(bundle)["members"][0]["name"]
    _tamper(bundle, edit(member))
    with pytest.raises(BundleError, match=field.replace("[", r"\[").replace("]", r"\]")):
        read_manifest(bundle, verify=False)
