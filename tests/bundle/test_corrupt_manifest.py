"""Corrupt or re-digested manifests the t3 fuzz campaign crashed on (t3 LOW #12), one case each, so
the fix is pinned without relying on the fuzz suite drawing the case: a lone UTF-16 surrogate
escape anywhere in manifest.json (a UnicodeEncodeError traceback in canonical_json and
resolve_in_bundle), a member pointed at another member's file (re-digested), and such a swap with
the file hashes swapped too (a ValueError traceback at predict: not one of our errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_committee.bundle import read_manifest
from edge_committee.bundle.manifest import DIGEST_KEY, manifest_digest
from edge_committee.errors import BundleError, EdgeCommitteeError
from edge_committee.runtime import CascadeModel


def _write(bundle: Path, doc: dict, redigest: bool = True) -> None:
    if redigest:
        doc[DIGEST_KEY] = manifest_digest(doc)
    (bundle / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")  # ensure_ascii: "\ud800" escaped


def _one_line(result, *needles) -> None:
    code, out, err = result
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: "), (code, err)
    assert all(n in err for n in needles), err


@pytest.mark.parametrize("where", ["name", "member file", "label"])
def test_a_lone_surrogate_is_one_bundle_error(bundle: Path, cli, where):
    doc = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    if where == "name":
        doc["name"] = "tiny\ud800"
    elif where == "member file":
        doc["members"][0]["file"] = "members/\udfff.onnx"
    else:
        doc["labels"][0] = "a\ud800b"
    _write(bundle, doc, redigest=False)  # a lone surrogate cannot be digested (nor encoded as UTF-8)
    with pytest.raises(BundleError, match="lone UTF-16 surrogate"):
        read_manifest(bundle)
    for command in ("inspect", "predict"):
        argv = [command, bundle] + ([bundle.parent / "batch.npy"] if command == "predict" else [])
        _one_line(cli(*argv), str(bundle / "manifest.json"), "lone UTF-16 surrogate", "rebuild the bundle")


def _swap(doc: dict, a: int, b: int, keys: tuple[str, ...]) -> None:
    ma, mb = doc["members"][a], doc["members"][b]
    for k in keys:
        ma[k], mb[k] = mb[k], ma[k]


def test_a_member_pointing_at_another_members_file_is_refused(bundle: Path, cli):
    doc = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    _swap(doc, 0, -1, ("file",))  # re-digested, so the edit reaches the schema check
    _write(bundle, doc)
    first = doc["members"][0]["name"]
    with pytest.raises(BundleError, match=rf"members\[0\] \({first}\).*points at another member's file"):
        read_manifest(bundle)
    _one_line(cli("inspect", bundle), "points at another member's file")


def test_a_rehashed_swap_of_members_of_other_sizes_is_one_line_at_predict(bundle: Path, cli):
    doc = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    shapes = [tuple(m["input_shape"]) for m in doc["members"]]
    i, j = 0, next(k for k, s in enumerate(shapes) if s != shapes[0])  # two members of different input sizes
    _swap(doc, i, j, ("file", "sha256"))  # each member now runs the other's file; every checksum holds
    doc["cascade"]["members"] = [doc["members"][i]["name"]]  # the swapped member runs first
    doc["cascade"]["thresholds"] = []
    _write(bundle, doc)
    read_manifest(bundle)  # loads: the checksums cannot tell
    images = np.load(bundle.parent / "batch.npy")
    with CascadeModel(bundle, threads=1) as model, pytest.raises(EdgeCommitteeError, match="input has shape"):
        model.predict(images)
    _one_line(cli("predict", bundle, bundle.parent / "batch.npy"), doc["members"][i]["name"], "preprocessing")
