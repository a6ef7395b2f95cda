"""Finding 14: manifest and profile fields are validated on load; each mistake is one line, no traceback.

Every tampered manifest is re-signed (checksums recomputed), so what refuses it is the schema check,
not the manifest checksum.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bundle_cases import one_line_error, tamper

import edge_committee as ec
from edge_committee.errors import BundleError


def _cascade(**kv):
    return lambda m: m["cascade"].update(kv)


def _member(key, value, i=0):
    return lambda m: m["members"][i].update({key: value})


CASES = {
    "threshold_nan": (_cascade(thresholds=[float("nan")] * 2), "thresholds[0] must be a finite number"),
    "threshold_inf": (_cascade(thresholds=[float("inf")] * 2), "thresholds[0] must be a finite number"),
    "threshold_str": (_cascade(thresholds=["abc", "abc"]), "thresholds[0] must be a finite number"),
    "threshold_null": (_cascade(thresholds=[None, None]), "thresholds[0] must be a finite number"),
    "thresholds_empty": (_cascade(thresholds=[]), "cascade.thresholds must be a list of at least"),
    "confidence_bogus": (_cascade(confidence="bogus"), "cascade.confidence must be one of max_prob"),
    "thresholds_missing": (lambda m: m["cascade"].pop("thresholds"), "cascade is missing key 'thresholds'"),
    "files_list": (lambda m: m.update(files=list(m["files"])), "files must be a JSON object"),
    "macs_str": (_member("macs", "lots"), ".macs must be an integer >= 0"),
    "schema_true": (lambda m: m.update(schema_version=True), "schema_version True is not supported"),
    "member_not_object": (lambda m: m["members"].append(3), "members[3] must be a JSON object"),
    "member_no_file": (lambda m: m["members"][0].pop("file"), "members[0] is missing key 'file'"),
    "duplicate_member": (lambda m: m["members"].append(dict(m["members"][0])), "is used twice"),
    "label_null": (lambda m: m["labels"].__setitem__(0, None), "labels[0] must be a non-empty string"),
    "label_escape": (lambda m: m["labels"].__setitem__(0, "\x1b]0;owned\x07b"), "control characters"),
    "huge_size": (_member("preprocessing", {"size": [100000, 100000], "color": "gray", "mean": [0.5],
                                            "std": [0.25]}), "size"),  # probe B29: was a 37 GiB allocation
    "other_size": (_member("preprocessing", {"size": [16, 16], "color": "gray", "mean": [0.5],
                                             "std": [0.25]}), "input_shape must be"),
    "budget_str_format": (_cascade(val_accuracy="high"), "cascade.val_accuracy must be a finite number"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_manifest_fields_are_one_line(bundle: Path, cli, case):
    fn, expected = CASES[case]
    tamper(bundle, fn, resign=True)
    line = one_line_error(*cli("inspect", bundle)[::2])
    assert expected in line and "manifest.json" in line
    assert expected in one_line_error(*cli("predict", bundle, bundle.parent / "batch.npy")[::2])
    with pytest.raises(BundleError, match="manifest.json"):
        ec.load(bundle, verify=False)  # the schema is checked even without checksums


def test_deeply_nested_manifest_is_one_line(bundle: Path, cli):
    (bundle / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    assert "nested too deeply" in one_line_error(*cli("inspect", bundle)[::2])
    (bundle / "manifest.json").write_text('{"a":' * 100 + "1" + "}" * 100)
    assert "nested deeper than" in one_line_error(*cli("inspect", bundle)[::2])


def test_select_on_bad_bundles_is_one_line(bundle: Path, cli):
    tamper(bundle, _member("macs", "lots"), resign=True)  # probe B28
    one_line_error(*cli("select", bundle, "--budget-macs", "largest")[::2])


def test_pickled_outputs_are_one_line(bundle: Path, cli):
    np.savez(bundle / "outputs.npz", **{"small/validation": np.array([{"os": "system"}], dtype=object)})
    tamper(bundle, lambda m: None, resign=True)  # probe X9
    line = one_line_error(*cli("select", bundle, "--budget-macs", "largest")[::2])
    assert "outputs.npz" in line


@pytest.mark.parametrize("doc, expected", [
    ({"unit": "ms", "members": {"small": "fast"}}, "'small': cost must be a positive number"),  # probe X12
    ({"unit": "ms", "members": {"small": None}}, "'small': cost must be a positive number"),
    ({"unit": "ms", "members": {"small": True}}, "'small': cost must be a positive number"),
    ({"unit": {"a": 1}, "members": {"small": 1.0}}, "unit must be"),
    ({"unit": "ms", "members": {"small": [[[1.0]]]}}, "'small': cost must be a positive number"),
    ([1, 2], "needs a non-empty object 'members'"),
])
def test_bad_profiles_are_one_line(bundle: Path, cli, tmp_path: Path, doc, expected):
    prof = tmp_path / "latency.json"
    prof.write_text(json.dumps(doc))
    line = one_line_error(*cli("select", bundle, "--budget-ms", "5", "--profile", prof)[::2])
    assert expected in line and "latency.json" in line


def test_deeply_nested_profile_is_one_line(bundle: Path, cli, tmp_path: Path):
    prof = tmp_path / "latency.json"
    prof.write_text('{"members": ' + "[" * 100_000 + "]" * 100_000 + "}")
    one_line_error(*cli("select", bundle, "--budget-ms", "5", "--profile", prof)[::2])


def test_finalize_refuses_duplicate_member_names(bundle: Path):
    """Finding 11: two candidates with one name must never reach a manifest (probe S10)."""
    from edge_committee.bundle import finalize_manifest

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["members"].append(dict(manifest["members"][0]))
    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(BundleError, match="named 'small'"):
        finalize_manifest(bundle, manifest)
    assert (bundle / "manifest.json").read_bytes() == before
