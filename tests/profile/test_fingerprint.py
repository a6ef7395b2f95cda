"""The device fingerprint, its key, and where the profiler's image size comes from."""

from __future__ import annotations

import logging

from edge_committee.profile.fingerprint import describe, fingerprint, fingerprint_key, version_changes
from edge_committee.profile.profiler import parse_batches, source_shape


def test_fingerprint_names_the_device_backend_and_threads():
    fp = fingerprint("onnxrt", 2, gate="numpy")
    assert fp["key"] == fingerprint_key(fp) and fp["key"].startswith("onnxrt-") and fp["key"].endswith("c-t2")
    assert fp["cores"] >= 1 and fp["cpu"] and fp["versions"]["onnxruntime"] and fp["gate"] == "numpy"
    assert fingerprint("onnxrt", None)["key"].endswith("-tauto")


def test_a_gpu_backend_keys_by_its_device():
    fp = {"backend": "trt", "threads": None, "cpu": "ARMv8 Processor rev 1 (v8l)", "cores": 12,
          "device": {"name": "Orin (nvgpu)", "sm": "8.7"}}
    assert fingerprint_key(fp) == "trt-orin-nvgpu-sm87-12c-tauto"
    assert describe(fp) == "trt on Orin (nvgpu), default threads"


def test_version_changes_are_listed():
    a = {"versions": {"onnxruntime": "1.18.0", "numpy": "2.0"}}
    b = {"versions": {"onnxruntime": "1.20.1", "numpy": "2.0", "torch": "2.13"}}
    assert version_changes(a, b) == ["onnxruntime 1.18.0 -> 1.20.1"]


def test_image_size_falls_back_to_the_largest_member_input_with_a_warning(caplog):
    gray16 = {"size": [16, 16], "color": "gray"}
    rgb32 = {"size": [32, 24], "color": "rgb"}
    manifest = {"members": [{"preprocessing": gray16}, {"preprocessing": rgb32}], "data": {}}
    with caplog.at_level(logging.WARNING, logger="edge_committee"):
        assert source_shape(manifest) == (32, 24, 3)
    assert "does not record its images' size" in caplog.text
    manifest["data"] = {"test": {"image_shape": [28, 28, 1]}}
    assert source_shape(manifest) == (28, 28, 1)


def test_batch_sizes_parse():
    assert parse_batches("64, 1,8,8") == [1, 8, 64]
    import pytest

    from edge_committee.errors import EdgeCommitteeError

    for bad in ("0,1", "a", "", "1,,8", "1,8,"):  # t3 L12: empty items were dropped silently
        with pytest.raises(EdgeCommitteeError, match="positive integers"):
            parse_batches(bad)
