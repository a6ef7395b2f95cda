"""Costs MACs leave out: each member's measured preprocessing in the build report, and the one-line
warning when a cascade chosen by MACs is not faster end to end than the largest member."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from edge_committee.cli.main import main
from edge_committee.profile import quick


@pytest.fixture(autouse=True)
def _checks_on(monkeypatch):
    monkeypatch.delenv("EDGE_COMMITTEE_CHECK_S", raising=False)


@pytest.fixture
def cascade_spec(tiny_committee: Path) -> Path:
    spec = yaml.safe_load(tiny_committee.read_text())
    spec["budget"] = {"macs": 1000, "kind": "mean"}  # a cascade of the three
    tiny_committee.write_text(yaml.safe_dump(spec, sort_keys=False))
    return tiny_committee


def _build(spec: Path) -> tuple[Path, dict]:
    from edge_committee.pipeline import build

    out = spec.parent / "bundle"
    return out, build(spec, out, cache_dir=spec.parent / "cache", log=lambda s: None)


def _turns(cascade_ms: float, largest_ms: float):
    return lambda fns, budget_s: [cascade_ms, largest_ms]


def test_the_report_shows_each_members_measured_preprocessing(cascade_spec: Path):
    bundle, manifest = _build(cascade_spec)
    for m in manifest["members"]:
        cost = m["preprocess_cost"]
        assert cost["ms_per_image"] > 0 and cost["source_shape"] == [12, 12, 3]
    report = (bundle / "report.md").read_text()
    assert "| member | precision | MACs (M) | preprocessing (ms/image) |" in report
    large = next(m for m in manifest["members"] if m["name"] == "large")
    assert f"| {large['preprocess_cost']['ms_per_image']:.3g} |" in report
    check = manifest["cascade"]["end_to_end"]
    assert len(manifest["cascade"]["members"]) > 1 and check["largest"] == "large"
    assert check["cascade_ms_per_image"] > 0 and check["largest_ms_per_image"] > 0 and check["images"] >= 4
    assert "End to end on the build machine" in report
    assert json.loads((bundle / "manifest.json").read_text())["cascade"]["end_to_end"] == check


def test_a_cascade_not_faster_than_the_largest_member_is_one_warning_line(cascade_spec: Path, monkeypatch, caplog):
    monkeypatch.setattr(quick, "_take_turns", _turns(2.0, 1.0))
    with caplog.at_level(logging.WARNING, logger="edge_committee"):
        bundle, manifest = _build(cascade_spec)
    lines = [r.getMessage() for r in caplog.records if "not faster end to end" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "the largest member large" in lines[0] and "--budget-ms" in lines[0]
    assert "**not faster**" in (bundle / "report.md").read_text()

    caplog.clear()  # select warns the same way; a faster cascade says nothing
    with caplog.at_level(logging.WARNING, logger="edge_committee"):
        assert main(["select", str(bundle), "--budget-macs", "1000", "--budget-kind", "mean"]) == 0
    assert sum("not faster end to end" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.setattr(quick, "_take_turns", _turns(1.0, 2.0))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge_committee"):
        assert main(["select", str(bundle), "--budget-macs", "1000", "--budget-kind", "mean"]) == 0
    assert not any("not faster" in r.getMessage() for r in caplog.records)


def test_the_checks_can_be_switched_off(cascade_spec: Path, monkeypatch):
    monkeypatch.setenv("EDGE_COMMITTEE_CHECK_S", "0")
    _, manifest = _build(cascade_spec)
    assert "end_to_end" not in manifest["cascade"]
    assert not any("preprocess_cost" in m for m in manifest["members"])
