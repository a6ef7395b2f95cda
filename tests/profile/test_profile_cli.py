"""``edge-committee profile`` and ``select --budget-ms`` on the tiny committee's bundle."""

from __future__ import annotations

import json
import re
import logging
from pathlib import Path

import pytest

from edge_committee.cli.main import main
from edge_committee.profile import fingerprint, profile_bundle

from .conftest import FAST, FAST_ARGS

THIS_DEVICE_T1 = fingerprint("onnxrt", 1)["key"]


def test_profile_writes_a_checksummed_profile_listed_in_the_manifest(built_bundle: Path, capsys):
    assert main(["profile", str(built_bundle), "--batch", "1,4", "--threads", "1", "-q", *FAST_ARGS]) == 0
    out = capsys.readouterr().out
    assert "| small: inference |" in out and "| small: one runtime call |" in out and "apart: gate" in out
    manifest = json.loads((built_bundle / "manifest.json").read_text())
    entry = manifest["profiles"][THIS_DEVICE_T1]
    assert entry["file"] == f"profiles/{THIS_DEVICE_T1}.json" and entry["file"] in manifest["files"]
    doc = json.loads((built_bundle / entry["file"]).read_text())
    assert doc["batch_sizes"] == [1, 4] and set(doc["members"]) == {"small", "medium", "large"}
    assert doc["source_shape"] == [12, 12, 3]  # the size of the bundle's images, recorded at build
    t = doc["members"]["large"]["batches"]["4"]
    assert 0 < t["median_ms"] <= t["p90_ms"] <= t["p99_ms"] and t["iterations"] >= 3
    stage = doc["members"]["large"]["stage"]["4"]  # a runtime call holds the inference: slower call by call
    assert stage["iterations"] == t["iterations"] and stage["median_ms"] >= t["median_ms"]
    assert doc["fingerprint"]["threads"] == 1 and doc["fingerprint"]["versions"]["onnxruntime"]
    assert main(["inspect", str(built_bundle)]) == 0  # every checksum holds


def test_profiles_of_two_devices_live_side_by_side(built_bundle: Path):
    for threads in ("1", "2"):
        assert main(["profile", str(built_bundle), "--batch", "1", "--threads", threads, "-q", *FAST_ARGS]) == 0
    manifest = json.loads((built_bundle / "manifest.json").read_text())
    assert set(manifest["profiles"]) == {THIS_DEVICE_T1, fingerprint("onnxrt", 2)["key"]}
    assert all(e["file"] in manifest["files"] for e in manifest["profiles"].values())


def test_ctrl_c_leaves_no_partial_profile(built_bundle: Path, monkeypatch):
    from edge_committee.profile import profiler

    before = (built_bundle / "manifest.json").read_bytes()
    calls = {"n": 0}
    real = profiler.time_call

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(profiler, "time_call", interrupted)
    assert main(["profile", str(built_bundle), "--batch", "1,4", "--threads", "1", "-q", *FAST_ARGS]) == 130
    assert (built_bundle / "manifest.json").read_bytes() == before
    assert not (built_bundle / "profiles").exists()
    assert not [p for p in built_bundle.parent.iterdir() if p.name.startswith(".bundle")]


def test_select_uses_this_devices_profile(profiled_bundle: Path, capsys):
    assert main(["select", str(profiled_bundle), "--budget-ms", "100", "--threads", "1", "--batch", "4"]) == 0
    manifest = json.loads((profiled_bundle / "manifest.json").read_text())
    c = manifest["cascade"]
    assert c["cost_unit"] == "ms" and c["cost_model"]["batch"] == 4 and THIS_DEVICE_T1 in c["cost_model"]["description"]
    assert c["worst_cost"] <= 100
    assert "mean latency per batch of 4" in (profiled_bundle / "selection.md").read_text()
    assert THIS_DEVICE_T1 in json.loads((profiled_bundle / "manifest.json").read_text())["profiles"]  # kept


def test_select_finds_the_profile_without_repeating_threads(profiled_bundle: Path, capsys):
    """`profile --threads 1` then `select --budget-ms` (no --threads): this device's one profile is used."""
    assert main(["select", str(profiled_bundle), "--budget-ms", "100"]) == 0
    c = json.loads((profiled_bundle / "manifest.json").read_text())["cascade"]
    assert c["cost_unit"] == "ms" and THIS_DEVICE_T1 in c["cost_model"]["description"]


def test_several_thread_counts_name_the_flag(profiled_bundle: Path, capsys):
    from edge_committee.bundle import edit_bundle

    with edit_bundle(profiled_bundle) as ed:  # a second profile of this device, at 2 threads
        t2 = THIS_DEVICE_T1[:-1] + "2"
        entry = dict(ed.manifest["profiles"][THIS_DEVICE_T1], file=f"profiles/{t2}.json")
        doc = json.loads((profiled_bundle / f"profiles/{THIS_DEVICE_T1}.json").read_text())
        doc["name"] = doc["fingerprint"]["key"] = t2
        ed.add(entry["file"]).write_text(json.dumps(doc))
        ed.manifest["profiles"][t2] = entry
    assert main(["select", str(profiled_bundle), "--budget-ms", "100"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "at several thread counts" in err and "--threads N (N one of 1, 2)" in err


def test_no_profile_for_this_device_lists_the_profiles_and_the_command(profiled_bundle: Path, capsys):
    assert main(["select", str(profiled_bundle), "--budget-ms", "5", "--threads", "3"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"profiles in the bundle: {THIS_DEVICE_T1}" in err
    assert f"edge-committee profile {profiled_bundle} --backend onnxrt --threads 3" in err


def test_budget_below_every_candidate_says_the_cheapest(profiled_bundle: Path, capsys):
    assert main(["select", str(profiled_bundle), "--budget-ms", "1e-6", "--threads", "1"]) == 1
    assert "is below every candidate; the cheapest possible is" in capsys.readouterr().err


def test_another_devices_profile_is_used_with_a_warning(profiled_bundle: Path, tmp_path: Path, caplog):
    doc = json.loads(next((profiled_bundle / "profiles").iterdir()).read_text())
    doc["fingerprint"].update(cpu="NVIDIA Jetson AGX Orin", cores=12, key="onnxrt-nvidia-jetson-agx-orin-12c-t1")
    doc["name"] = doc["fingerprint"]["key"]
    other = tmp_path / "orin.json"
    other.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="edge_committee"):
        assert main(["select", str(profiled_bundle), "--budget-ms", "100", "--profile", str(other)]) == 0
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "onnxrt-nvidia-jetson-agx-orin-12c-t1" in warning and THIS_DEVICE_T1 in warning


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["members"]["small"]["batches"]["1"].update(median_ms="fast"),
     "members.small.batches.1.median_ms: 'fast' is not of type 'number'"),
    (lambda d: d["overhead"].pop("gate"), "'gate' is a required property"),
    (lambda d: d["overhead"]["call"].pop("4"), "overhead.call has batch sizes ['1'], expected ['1', '4']"),
])
def test_a_hand_edited_profile_fails_its_schema_in_one_line(profiled_bundle: Path, tmp_path: Path, capsys,
                                                               edit, message):
    doc = json.loads(next((profiled_bundle / "profiles").iterdir()).read_text())
    edit(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["select", str(profiled_bundle), "--budget-ms", "100", "--profile", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and message in err


def test_a_profile_edited_inside_the_bundle_fails_its_checksum(profiled_bundle: Path, capsys):
    path = next((profiled_bundle / "profiles").iterdir())
    path.write_text(path.read_text().replace('"median_ms": ', '"median_ms": 1', 1))
    assert main(["select", str(profiled_bundle), "--budget-ms", "100", "--threads", "1"]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_the_older_hand_written_profile_still_works(built_bundle: Path, tmp_path: Path):
    old = tmp_path / "latency.json"
    old.write_text(json.dumps({"unit": "ms", "members": {"small": 0.1, "medium": 0.3, "large": 1.0}}))
    assert main(["select", str(built_bundle), "--budget-ms", "0.5", "--profile", str(old)]) == 0
    c = json.loads((built_bundle / "manifest.json").read_text())["cascade"]
    assert c["cost_unit"] == "ms" and c["cost_model"] is None and c["worst_cost"] <= 0.5


def test_profiling_a_subset_with_real_images(built_bundle: Path, tmp_path: Path):
    import numpy as np

    images = np.zeros((3, 20, 30, 1), np.uint8)
    doc = profile_bundle(built_bundle, "onnxrt", [2], 1, members=["small"], images=images, timing=FAST,
                         show_progress=False)
    assert list(doc["members"]) == ["small"] and doc["source_shape"] == [20, 30, 1]
    assert list(doc["overhead"]["preprocess"]) == ["small"]


def test_a_cascade_backend_is_profiled_through_the_facade(built_bundle: Path, capsys):
    """onnxrt-fused runs whole cascades (one fused ONNX graph): each member is timed as a one-member
    cascade through the facade, and the profile is that backend's, side by side with others."""
    assert main(["profile", str(built_bundle), "--backend", "onnxrt-fused", "--batch", "2", "--threads", "1",
                 "--members", "small,large", "-q", *FAST_ARGS]) == 0
    manifest = json.loads((built_bundle / "manifest.json").read_text())
    key = fingerprint("onnxrt-fused", 1)["key"]
    assert key.startswith("onnxrt-fused-") and key in manifest["profiles"]
    doc = json.loads((built_bundle / manifest["profiles"][key]["file"]).read_text())
    assert set(doc["members"]) == {"small", "large"}
    assert doc["members"]["large"]["stage"]["2"] == doc["members"]["large"]["batches"]["2"]
    assert main(["profile", str(built_bundle), "--backend", "nope", "-q"]) == 1
    assert "unknown backend 'nope'" in capsys.readouterr().err


def test_a_profile_nested_too_deeply_is_one_line(profiled_bundle: Path, tmp_path: Path, capsys):
    bad = tmp_path / "deep.json"
    bad.write_text('{"schema": "edge_committee.profile/1", "members": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main(["select", str(profiled_bundle), "--budget-ms", "100", "--profile", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "deep.json" in err and "is not JSON" in err


def test_profile_source_may_be_a_folder_of_images(built_bundle: Path, tmp_path: Path, capsys):
    """Once a traceback ('ImageFiles' object has no attribute 'shape'): a folder is decoded, only as
    many images as the largest batch, and the profile records their size."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        size = (30, 40) if i else (31, 41)  # one odd size: the most common one is profiled
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    assert main(["profile", str(built_bundle), "--batch", "1,3", "--threads", "1", "--members", "small",
                 "--source", str(folder), "--dry-run", "-q", *FAST_ARGS]) == 0
    assert json.loads(capsys.readouterr().out)["source_shape"] == [30, 40, 3]


def test_profile_at_a_camera_size(built_bundle: Path, tmp_path: Path, capsys):
    import numpy as np

    argv = ["profile", str(built_bundle), "--batch", "2", "--threads", "1", "--members", "small", "--dry-run", "-q",
            *FAST_ARGS]
    assert main([*argv, "--source-size", "64x48"]) == 0  # random images (width 64, height 48), the bundle's channels
    assert json.loads(capsys.readouterr().out)["source_shape"] == [48, 64, 3]
    np.save(tmp_path / "x.npy", np.zeros((3, 12, 12, 1), np.uint8))
    assert main([*argv, "--source-size", "10x20", "--source", str(tmp_path / "x.npy")]) == 0  # resized
    assert json.loads(capsys.readouterr().out)["source_shape"] == [20, 10, 1]
    assert main([*argv, "--source-size", "1080 by 1920"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'1080 by 1920' is not a size WxH" in err and "1920x1080" in err


def test_a_profile_of_a_members_earlier_file_is_not_used(profiled_bundle: Path, capsys):
    """t3 LOW #20 (K6): after `adapt` swapped a member's file, the profile that timed the old file is refused
    (its recorded sha256 no longer matches), naming the member and the command that re-profiles."""
    from edge_committee.bundle import read_manifest
    from edge_committee.bundle.bundle import edit_bundle

    manifest = read_manifest(profiled_bundle)
    entry = next(iter(manifest["profiles"].values()))
    member = manifest["members"][0]["name"]
    with edit_bundle(profiled_bundle) as ed:  # the profile as it was when the member had another file
        path = ed.path / entry["file"]
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["members"][member]["sha256"] = "0" * 64
        path.write_text(json.dumps(doc), encoding="utf-8")
        ed.add(entry["file"])
    capsys.readouterr()
    assert main(["select", str(profiled_bundle), "--budget-ms", "100", "--threads", "1", "--batch", "4"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"timed other files for members {member}" in err and "edge-committee profile" in err


def test_a_profile_with_a_nan_timing_is_refused(profiled_bundle: Path):
    """t3 LOW #16 (L8): ``NaN`` passed the schema's ``minimum: 0`` (every comparison with NaN is false)."""
    from edge_committee.bundle import read_manifest
    from edge_committee.errors import EdgeCommitteeError
    from edge_committee.profile.store import read_profile

    entry = next(iter(read_manifest(profiled_bundle)["profiles"].values()))
    path = profiled_bundle / entry["file"]
    text = path.read_text(encoding="utf-8")
    bad = profiled_bundle.parent / "nan_profile.json"
    bad.write_text(re.sub(r'"median_ms": [0-9.e+-]+', '"median_ms": NaN', text, count=1), encoding="utf-8")
    assert read_profile(path)  # the original reads
    with pytest.raises(EdgeCommitteeError, match="NaN is not a timing"):
        read_profile(bad)
