"""report.md never calls a MACs ratio a speed-up; with a profile it shows measured latencies."""

from __future__ import annotations

from pathlib import Path

from edge_committee.bundle import read_manifest
from edge_committee.bundle.report import build_report_markdown


def test_without_a_profile_the_macs_ratio_is_named_as_such(built_bundle: Path):
    text = build_report_markdown(read_manifest(built_bundle), built_bundle)
    assert "ratio of multiply-accumulates, not of time" in text and "edge-committee profile" in text
    assert "speed-up" not in text and "faster" not in text and "Measured latency" not in text


def test_with_a_profile_the_report_shows_measured_times(profiled_bundle: Path):
    manifest = read_manifest(profiled_bundle)
    text = build_report_markdown(manifest, profiled_bundle)
    assert "## Measured latency (latency profiles in the bundle)" in text
    (name,) = manifest["profiles"]
    line = next(ln for ln in text.splitlines() if f"(profile `{name}`)" in ln)
    assert all(f"{m} " in line and " ms" in line for m in manifest["cascade"]["members"])
    assert "modeled mean latency" in text and "faster, from these measurements" in text
