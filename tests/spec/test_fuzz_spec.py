"""Fuzz the committee spec: structural edits, byte edits and injected YAML lines, then ``load_spec``.

Every outcome is a loaded spec or a :class:`SpecError` / :class:`EdgeCommitteeError` line; never
another exception, never a hang (10 s per case). Case count: ``EC_FUZZ_EXAMPLES``.
"""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from edge_committee.errors import EdgeCommitteeError
from edge_committee.spec import load_spec

from ..fuzzing import FUZZ, Tally, byte_edits, mutated

TALLY = Tally("spec")
INJECTED = [
    "x: !!python/object/apply:os.system ['touch PWNED']",
    "a: &a [*a]",
    "b: &b [b, b, b]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c]",
    "x: !!binary aGVsbG8=",
    "x: !!set {a, b}",
    "? [a, b]\n: c",
    "budget: {macs: .nan}",
    "budget: {macs: 1e999}",
    "evaluation: {batch_size: 0}",
    "name: !!str",
    "members: []",
    "labels: [a, a]",
    "selection: {max_members: -1}",
    "\t- tab",
    "name: \"\\ud800\"",
    "x: " + "[" * 200 + "]" * 200,
]


@pytest.fixture(scope="module")
def work(tiny_committee_factory, tmp_path_factory):
    spec = tiny_committee_factory(tmp_path_factory.mktemp("fuzz-spec"))
    text = spec.read_text()
    yield spec, text, yaml.safe_load(text)
    TALLY.report()


@FUZZ
@given(data=st.data())
def test_spec_mutations_load_or_are_one_spec_error(work, data):
    spec, text, doc = work
    mode = data.draw(st.sampled_from(["struct", "bytes", "inject"]))
    if mode == "struct":
        new_doc, ops = data.draw(mutated(doc))
        new = yaml.safe_dump(new_doc, sort_keys=False, allow_unicode=False).encode("utf-8", "surrogatepass")
    elif mode == "bytes":
        new, ops = data.draw(byte_edits(text.encode("utf-8"))), ["bytes"]
    else:
        line = data.draw(st.sampled_from(INJECTED))
        new, ops = (text + "\n" + line + "\n").encode("utf-8", "surrogatepass"), [line[:60]]
    target = spec.with_name("fuzzed.yaml")
    target.write_bytes(new)
    try:
        load_spec(target)
    except EdgeCommitteeError:
        TALLY.add(f"{mode}: refused")
        return
    except Exception as exc:  # noqa: BLE001 - the property under test
        raise AssertionError(f"{mode} {ops}: {type(exc).__name__} outside our error types: {exc}") from exc
    TALLY.add(f"{mode}: accepted")
    assert not (spec.parent / "PWNED").exists()
