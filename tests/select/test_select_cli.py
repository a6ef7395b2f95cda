"""``edge-committee select --search --confidence-level`` on a built bundle."""

from __future__ import annotations

import json

from edge_committee.cli.main import main


def test_select_prints_search_and_intervals(built_bundle, capsys):
    before = json.loads((built_bundle / "manifest.json").read_text())["cascade"]
    assert main(["select", str(built_bundle), "--budget-macs", "largest", "--search", "exhaustive"]) == 0
    out = capsys.readouterr().out
    assert "search exhaustive:" in out and "sequences scored" in out and "vs " in out
    after = json.loads((built_bundle / "manifest.json").read_text())["cascade"]
    for key in ("members", "thresholds", "val_accuracy", "mean_cost"):  # auto == exhaustive here
        assert after[key] == before[key], key
    assert after["search"]["mode"] == "exhaustive" and before["search"]["mode"] == "exhaustive"
    assert main(["select", str(built_bundle), "--target-accuracy", "best_single", "--confidence-level", "0.9"]) == 0
    cascade = json.loads((built_bundle / "manifest.json").read_text())["cascade"]
    assert cascade["confidence_level"] == 0.9 and cascade["paired_interval"][0] >= 0.0
    assert "0.9 interval" in (built_bundle / "selection.md").read_text()


def test_select_rejects_a_bad_confidence_level(built_bundle, capsys):
    code = main(["select", str(built_bundle), "--target-accuracy", "best_single", "--confidence-level", "90"])
    err = capsys.readouterr().err
    assert code == 1 and "--confidence-level 90: must be a finite number > 0 and < 1" in err and "Traceback" not in err


def test_build_prints_the_search_and_the_intervals(tiny_committee, cache_dir, capsys):
    out = tiny_committee.parent / "bundle"
    assert main(["build", str(tiny_committee), "--out", str(out), "--cache-dir", str(cache_dir), "-q"]) == 0
    text = capsys.readouterr().out
    cascade = json.loads((out / "manifest.json").read_text())["cascade"]
    assert "search exhaustive:" in text and f"vs {cascade['paired_reference']}" in text
    assert all(f"warning: {w}" in text for w in cascade["warnings"])
