"""Fuzz the manifest: structural and byte mutations, re-digested or not, then load and predict.

Every outcome must be a refusal with one of our errors (:class:`EdgeCommitteeError`) or a loaded
bundle; a mutation that changes the canonical manifest without re-digesting must be refused, and a
bundle that loads without a re-digest must answer exactly as before ("never a changed answer
without a changed digest"). Case count: ``EC_FUZZ_EXAMPLES`` (see tests/fuzzing.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_committee.bundle.manifest import DIGEST_KEY, canonical_json, manifest_digest
from edge_committee.errors import EdgeCommitteeError
from edge_committee.runtime import CascadeModel

from ..fuzzing import FUZZ, Tally, byte_edits, mutated

TALLY = Tally("manifest")


@pytest.fixture(scope="module")
def work(session_bundle: Path, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-manifest") / "bundle"
    shutil.copytree(session_bundle, root)
    images = np.load(session_bundle.parent / "batch.npy")
    with CascadeModel(root, threads=1) as model:
        ref = model.predict(images)
    original = (root / "manifest.json").read_bytes()
    yield root, original, json.loads(original), images, ref
    TALLY.report()


def _canonical(data: bytes) -> bytes | None:
    try:
        doc = json.loads(data.decode("utf-8"))
        return canonical_json(doc) if isinstance(doc, dict) else None
    except (ValueError, UnicodeError, RecursionError):
        return None


def _redigest(doc):
    try:
        doc[DIGEST_KEY] = manifest_digest(doc)
    except (UnicodeError, ValueError, TypeError):
        pass  # a lone surrogate or NaN key cannot be digested: written as it is
    return doc


def _same(a, b) -> bool:
    return (np.array_equal(a.labels, b.labels) and np.array_equal(a.exit_stage, b.exit_stage)
            and np.array_equal(a.probs, b.probs, equal_nan=True))


@FUZZ
@given(data=st.data())
def test_manifest_mutations_are_answered_or_refused_by_our_errors(work, data):
    root, original, doc, images, ref = work
    mode = data.draw(st.sampled_from(["struct_redigest", "struct_nodigest", "bytes_redigest", "bytes_nodigest"]))
    if mode.startswith("struct"):
        new_doc, ops = data.draw(mutated(doc))
        if mode == "struct_redigest" and isinstance(new_doc, dict):
            new_doc = _redigest(new_doc)
        new = json.dumps(new_doc, indent=1).encode("utf-8")
    else:
        new, ops = data.draw(byte_edits(original)), ["bytes"]
        if mode == "bytes_redigest":
            try:
                parsed = json.loads(new.decode("utf-8"))
                if isinstance(parsed, dict):
                    new = json.dumps(_redigest(parsed), indent=1).encode("utf-8")
            except (ValueError, UnicodeError, RecursionError):
                pass
    (root / "manifest.json").write_bytes(new)
    try:
        with CascadeModel(root, threads=1) as model:
            pred = model.predict(images)
    except EdgeCommitteeError:
        TALLY.add(f"{mode}: refused")
        return
    except Exception as exc:  # noqa: BLE001 - the property under test
        raise AssertionError(f"{mode} {ops}: {type(exc).__name__} outside our error types: {exc}") from exc
    finally:
        (root / "manifest.json").write_bytes(original)
    same = _same(pred, ref)
    if mode.endswith("nodigest"):
        assert _canonical(new) == canonical_json(doc), f"{mode} {ops}: a changed manifest loaded without re-digest"
        assert same, f"{mode} {ops}: the answer changed without a changed digest"
    TALLY.add(f"{mode}: loaded, {'same' if same else 'different'} answer")
