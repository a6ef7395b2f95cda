"""Spec keys of the other committee kinds: ``combiner`` (learned) and ``shares`` (self-cascades)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge_committee.errors import SpecError
from edge_committee.spec import load_spec

EXAMPLE = Path(__file__).parents[2] / "examples/fashion_mnist"


def edit(spec_path: Path, fn) -> Path:
    d = yaml.safe_load(spec_path.read_text())
    fn(d)
    spec_path.write_text(yaml.safe_dump(d, sort_keys=False))
    return spec_path


@pytest.mark.parametrize("value", ["average", "learned", {"kind": "learned", "folds": 3, "l2": 0.0, "seed": 2},
                                   {"max_members": 2}])
def test_combiner_values(tiny_committee: Path, value):
    assert load_spec(edit(tiny_committee, lambda d: d.update(combiner=value))).combiner == value


@pytest.mark.parametrize("value, match", [("stacked", "is not allowed"), ({"folds": 1}, "folds"),
                                          ({"l2": -1}, "l2"), ({"kind": "learned", "lr": 1}, "unknown key 'lr'")])
def test_bad_combiner_is_one_line(tiny_committee: Path, value, match):
    with pytest.raises(SpecError, match=match) as err:
        load_spec(edit(tiny_committee, lambda d: d.update(combiner=value)))
    assert "\n" not in str(err.value) and str(tiny_committee) in str(err.value)


def test_shares_takes_the_other_members_model(tiny_committee: Path):
    def add(d):
        d["members"].append({"name": "large-6", "shares": "large", "preprocessing": {"size": [6, 6]}})

    spec = load_spec(edit(tiny_committee, add))
    large, shared = spec.member("large"), spec.member("large-6")
    assert shared.onnx == large.onnx and shared.shares == "large" and shared.preprocessing.size == (6, 6)


@pytest.mark.parametrize("entry, match", [
    ({"name": "x", "shares": "nope", "preprocessing": {"size": [6, 6]}}, "not a member with its own model"),
    ({"name": "x", "shares": "x", "preprocessing": {"size": [6, 6]}}, "not a member with its own model"),
    ({"name": "x", "shares": "large", "onnx": "large.onnx", "preprocessing": {"size": [6, 6]}}, "give no 'onnx'"),
    ({"name": "x", "shares": ["large"], "preprocessing": {"size": [6, 6]}}, "must be the name"),
])
def test_bad_shares_is_one_line(tiny_committee: Path, entry, match):
    with pytest.raises(SpecError, match=match):
        load_spec(edit(tiny_committee, lambda d: d["members"].append(entry)))


def test_example_specs_of_the_other_kinds_load():
    self_spec = load_spec(EXAMPLE / "committee_self.yaml")
    shared = [m for m in self_spec.members if m.shares]
    assert {m.shares for m in shared} == {"phi5"} and len(shared) == 4
    assert all(m.weights == self_spec.member("phi5").weights for m in shared)
    learned = load_spec(EXAMPLE / "committee_learned.yaml")
    assert learned.combiner["kind"] == "learned"
    assert [m.name for m in learned.members if m.name.startswith("bag")] == ["bag0", "bag1", "bag2", "bag3"]
