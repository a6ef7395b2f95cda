"""The report writer: PNG, Markdown and strict JSON, written atomically."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edge_committee.select import select_cascade, write_report

pytest.importorskip("matplotlib")


def _strict(text):
    def bad(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=bad)


def test_report_files(tmp_path, small_data):
    res = select_cascade(small_data, "worst_cost", 3e9, max_len=3)
    paths = write_report(res, tmp_path / "rep", stem="sel")
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["sel.json", "sel.md", "sel.png"]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = _strict(paths["json"].read_text())
    assert doc["chosen"] == json.loads(json.dumps(res.to_dict()))
    assert doc["chosen"]["members"] == list(res.chosen.members)
    kinds = {p["kind"] for p in doc["frontier"]}
    assert "cascade" in kinds and len(doc["singles"]) == 5
    costs = [p["mean_cost"] for p in doc["frontier"]]
    assert costs == sorted(costs)
    md = paths["md"].read_text()
    assert res.chosen.label in md and "| kind | committee |" in md and "sel.png" in md


def test_report_says_label_free(tmp_path, small_data):
    res = select_cascade(dataclasses.replace(small_data, val_labels=None), "accuracy", 0.95, max_len=2)
    paths = write_report(res, tmp_path)
    doc = _strict(paths["json"].read_text())
    assert doc["chosen"]["label_free"] is True and doc["chosen"]["reference"] == "ensemble"
    assert "label-free" in paths["md"].read_text()
    assert "agreement with the ensemble of all members" in paths["md"].read_text()
