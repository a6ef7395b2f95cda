"""The ``task`` key and the segmentation tile grid in the spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge_committee.errors import SpecError
from edge_committee.spec import load_spec
from tests.dense_helpers import write_tiny_segmentation


def edit(spec_path: Path, fn) -> Path:
    d = yaml.safe_load(spec_path.read_text())
    fn(d)
    spec_path.write_text(yaml.safe_dump(d, sort_keys=False))
    return spec_path


def test_classification_is_the_default(tiny_committee: Path):
    spec = load_spec(tiny_committee)
    assert spec.task == "classification" and spec.segmentation is None
    assert load_spec(edit(tiny_committee, lambda d: d.update(task="classification"))).task == "classification"


def test_segmentation_spec(tmp_path: Path):
    spec = load_spec(write_tiny_segmentation(tmp_path, tile=(8, 16), margin=3))
    assert spec.task == "segmentation"
    seg = spec.segmentation
    assert seg.tile == (8, 16) and seg.margin == 3 and seg.confidence == "mean_max_prob" and seg.ignore_index is None
    assert seg.grid.window == (14, 22) and seg.grid.count((16, 32)) == 4
    spec = load_spec(edit(spec.source, lambda d: d["segmentation"].update(tile=4, confidence="p10_max_prob",
                                                                          ignore_index=255)))
    assert spec.segmentation.tile == (4, 4) and spec.segmentation.confidence == "p10_max_prob"
    assert spec.segmentation.ignore_index == 255


@pytest.mark.parametrize("change, match", [
    (lambda d: d.update(task="video"), r"members\[0\] \(small\): missing key .view."),
    (lambda d: d.update(task="detection"), "use one of classification, segmentation, video"),
    (lambda d: d.pop("segmentation"), "needs its tile grid"),
    (lambda d: d["segmentation"].update(tile=6), "tile 6x6 does not divide the frame 16x32"),
    (lambda d: d["segmentation"].update(tile=[8]), "positive integer or \\[height, width\\]"),
    (lambda d: d["segmentation"].update(margin=-1), "segmentation.margin: -1 must be an integer >= 0"),
    (lambda d: d["segmentation"].update(confidence="entropy"), "use one of mean_max_prob, p10_max_prob"),
    (lambda d: d["segmentation"].update(stride=2), "unknown key 'stride'"),
    (lambda d: d["members"][1]["preprocessing"].update(size=[16, 16]), "must share one input size"),
    (lambda d: d.update(combiner="learned"), "averages its members"),
])
def test_bad_segmentation_spec_is_one_line(tmp_path: Path, change, match):
    path = edit(write_tiny_segmentation(tmp_path), change)
    with pytest.raises(SpecError, match=match) as err:
        load_spec(path)
    assert "\n" not in str(err.value)


def test_segmentation_key_needs_the_task(tiny_committee: Path):
    with pytest.raises(SpecError, match="add 'task: segmentation'"):
        load_spec(edit(tiny_committee, lambda d: d.update(segmentation={"tile": 4})))
