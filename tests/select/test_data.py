"""SelectionData validation and the loaders (outputs.npz, latency profile)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_committee.errors import EdgeCommitteeError
from edge_committee.select import (
    SelectionData,
    frontier,
    load_outputs_npz,
    load_profile,
)


def _tiny(n=20, c=4, names=("a", "b")):
    rng = np.random.default_rng(0)
    return {m: rng.standard_normal((n, c)).astype(np.float32) for m in names}, rng.integers(0, c, n)


def test_outputs_npz_round_trip(tmp_path):
    val, y = _tiny()
    test, yt = _tiny(n=15)
    path = tmp_path / "outputs.npz"
    np.savez(path, **{f"{m}/validation": x for m, x in val.items()},
             **{f"{m}/test": x for m, x in test.items()},
             **{"labels/validation": y, "labels/test": yt})
    data = load_outputs_npz(path, {"a": 300, "b": 100})
    assert data.names == ["b", "a"]  # cheapest first
    assert data.cost_unit == "MACs" and data.num_val == 20 and data.num_test == 15
    np.testing.assert_array_equal(data.val_logits["a"], val["a"])
    np.testing.assert_array_equal(data.test_labels, yt)
    with pytest.raises(EdgeCommitteeError, match="lacks"):
        load_outputs_npz(path, {"a": 1, "c": 2})


def test_outputs_npz_without_validation_labels_is_label_free(tmp_path):
    val, _ = _tiny()
    path = tmp_path / "outputs.npz"
    np.savez(path, **{f"{m}/validation": x for m, x in val.items()})
    data = load_outputs_npz(path, {"a": 1, "b": 2})
    assert data.label_free and data.test_logits is None
    assert frontier(data, max_len=2).label_free


def test_profile_format_and_costs(tmp_path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"unit": "ms", "members": {"a": 2.5, "b": 0.8}}))
    prof = load_profile(path)
    assert prof.unit == "ms" and prof.costs == {"a": 2.5, "b": 0.8}
    val, y = _tiny()
    data = SelectionData(val, None, {"a": 1e9, "b": 2e9}, y).with_costs(prof.costs, prof.unit)
    assert data.cost_unit == "ms" and data.names == ["b", "a"]
    front = frontier(data, max_len=2, stage_overhead=0.05)
    (casc,) = [f for f in front.cascades]
    assert casc.members == ("b", "a") and casc.worst_cost == pytest.approx(0.8 + 2.5 + 0.1)
    for bad in ({"members": {}}, {"unit": "ms", "members": {"a": -1}}, [1, 2]):
        path.write_text(json.dumps(bad))
        with pytest.raises(EdgeCommitteeError):
            load_profile(path)
    with pytest.raises(EdgeCommitteeError, match="no entry"):
        data.with_costs({"a": 1.0}, "ms")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"costs": {"a": 1}}, "one cost per member"),
        ({"costs": {"a": 1, "b": 0}}, "positive"),
        ({"val_labels": np.zeros(3, int)}, "labels"),
        ({"val_labels": np.full(20, 9)}, r"\[0, 4\)"),
        ({"test_labels": np.zeros(20, int)}, "without test logits"),
    ],
)
def test_invalid_data_is_a_user_error(kwargs, match):
    val, y = _tiny()
    args = {"val_logits": val, "test_logits": None, "costs": {"a": 1, "b": 2}, "val_labels": y}
    args.update(kwargs)
    with pytest.raises(EdgeCommitteeError, match=match):
        SelectionData(**args)


def test_mismatched_shapes_are_user_errors():
    val, y = _tiny()
    val["b"] = val["b"][:, :3]
    with pytest.raises(EdgeCommitteeError, match="differ in shape"):
        SelectionData(val, None, {"a": 1, "b": 2}, y)
