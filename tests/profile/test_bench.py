"""``edge-committee bench`` and a build with a latency budget, on the tiny committee."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_committee.bundle.manifest import DIGEST_KEY, manifest_digest
from edge_committee.cli.main import main
from edge_committee.profile import fingerprint
from edge_committee.errors import EdgeCommitteeError
from edge_committee.profile.bench import contenders, run_round_robin

BENCH = ["--batch", "1,4", "--limit", "40", "--warmup", "1", "--threads", "1", "-q"]


def test_bench_compares_the_cascade_with_single_members(profiled_bundle: Path, tmp_path: Path, capsys):
    from edge_committee.runtime import CascadeModel

    out = tmp_path / "bench"
    assert main(["bench", str(profiled_bundle), *BENCH, "--out", str(out)]) == 0
    doc = json.loads((out / "bench.json").read_text())
    rows = {(r["batch"], r["role"]): r for r in doc["results"]}
    assert {b for b, _ in rows} == {1, 4} and ("cascade" in {role for _, role in rows})
    assert any("largest" in role for _, role in rows) and any("most accurate" in role for _, role in rows)
    manifest = json.loads((profiled_bundle / "manifest.json").read_text())
    split = np.load(manifest["data"]["test"]["source"]["path"])
    with CascadeModel(profiled_bundle, threads=1) as model:
        want = float(np.mean(model.predict(split["x"][:40]).labels == split["y"][:40]))
    for b in (1, 4):
        r = rows[(b, "cascade")]
        assert r["accuracy"] == pytest.approx(want) and r["calls"] == 40 // b and r["images"] == 40
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        p = r["predicted"]  # (the p90 worst case may fall below a mean that one slow call inflates)
        assert min(p["mean_ms"], p["mean_ms_measured_exits"], p["mean_ms_median_timings"], p["worst_ms"]) > 0
        assert sum(r["exit_histogram"]) == 40
    text = (out / "bench.md").read_text()
    assert "| 4 | cascade |" in text and "speed-up over the largest member" in text
    assert (out / "bench.png").stat().st_size > 1000
    assert doc["profile"] == fingerprint("onnxrt", 1)["key"] and len(doc["load_avg"]) == 3


def test_bench_checks_a_worst_case_latency_budget(profiled_bundle: Path, tmp_path: Path):
    assert main(["select", str(profiled_bundle), "--budget-ms", "100", "--batch", "4", "--threads", "1", "-q"]) == 0
    out = tmp_path / "bench"
    assert main(["bench", str(profiled_bundle), *BENCH, "--out", str(out), "--no-plot"]) == 0
    assert "Worst-case budget 100 ms at batch 4: measured p90" in (out / "bench.md").read_text()


def test_bench_without_a_profile_has_no_predictions(built_bundle: Path, tmp_path: Path):
    out = tmp_path / "bench"
    assert main(["bench", str(built_bundle), "--batch", "2", "--limit", "8", "--warmup", "0", "-q",
                 "--out", str(out)]) == 0
    doc = json.loads((out / "bench.json").read_text())
    assert doc["profile"] is None and all("predicted" not in r for r in doc["results"])
    assert "No profile of this device" in (out / "bench.md").read_text()


def test_bench_reads_other_images_and_says_when_the_test_split_is_unknown(built_bundle: Path, tmp_path: Path, capsys):
    manifest_path = built_bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    source = manifest["data"]["test"]["source"]["path"]
    del manifest["data"]["test"]["source"]  # as a bundle built before this release
    manifest.pop(DIGEST_KEY)
    manifest[DIGEST_KEY] = manifest_digest(manifest)
    manifest_path.write_text(json.dumps(manifest))
    out = tmp_path / "bench"
    assert main(["bench", str(built_bundle), "--batch", "2", "--limit", "8", "--out", str(out), "-q"]) == 1
    assert "pass --source" in capsys.readouterr().err
    assert main(["bench", str(built_bundle), "--batch", "2", "--limit", "8", "--warmup", "0", "--source", source,
                 "--out", str(out), "-q", "--no-plot"]) == 0
    assert json.loads((out / "bench.json").read_text())["results"][0]["images"] == 8


class _Recorder:
    def __init__(self, name, order, clock=None, ms=0.0):
        self.name, self.order, self.clock, self.ms = name, order, clock, ms

    def predict(self, x):
        self.order.append((self.name, len(x)))
        if self.clock is not None:
            self.clock.now += self.ms / 1e3
        return x


def test_round_robin_rotates_who_goes_first_and_times_every_full_batch():
    order = []
    models = [_Recorder(n, order) for n in "abc"]
    ms, preds = run_round_robin(models, np.zeros(10), 3, warmup=1, turn_s=0)
    timed = order[3:]  # after one warm-up batch each
    assert [n for n, _ in timed] == list("abc" + "bca" + "cab")  # 3 full batches of 3; the 10th image left out
    assert all(size == 3 for _, size in timed) and all(len(t) == 3 for t in ms) and len(preds[0]) == 3


@pytest.mark.parametrize("limit, got", [(None, "got 10"), (3, "got 3 (--limit 3)"), (0, "got 0 (--limit 0)")])
def test_too_few_images_for_a_batch_counts_the_images_used(limit, got):
    """t3 L14: ``bench --limit 0`` said 'got 40', the whole source, instead of the images it used."""
    with pytest.raises(EdgeCommitteeError) as exc:
        run_round_robin([_Recorder("a", [])], np.zeros(10), 16 if limit is None else 4, limit=limit)
    assert str(exc.value).endswith(got) and "at least" in str(exc.value), str(exc.value)


def test_round_robin_turns_are_blocks_the_slowest_runs_in_turn_s():
    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

    clock, order = Clock(), []
    models = [_Recorder("fast", order, clock, 1.0), _Recorder("slow", order, clock, 10.0)]
    ms, _ = run_round_robin(models, np.zeros(100), 1, warmup=0, turn_s=0.05, clock=clock)
    names = [n for n, _ in order]
    # round 0: one batch each (nothing timed yet); then blocks of 5 batches (5 x 10 ms = 0.05 s)
    assert names[:2] == ["fast", "slow"] and names[2:12] == ["slow"] * 5 + ["fast"] * 5
    assert names[12:22] == ["fast"] * 5 + ["slow"] * 5
    assert np.allclose(ms[0], 1.0) and np.allclose(ms[1], 10.0) and len(ms[0]) == 100


def test_contenders_are_the_cascade_the_largest_and_the_most_accurate():
    def member(name, macs, acc, precision="fp32"):
        return {"name": name, "macs": macs, "precision": precision, "accuracy": {"validation": acc}}

    manifest = {"cascade": {"members": ["s", "m"], "thresholds": [0.9, 3e38]},
                "members": [member("s", 1, 0.8), member("m", 5, 0.93), member("l", 9, 0.92),
                            member("l.int8", 9, 0.91, "int8")]}
    got = {c.role: c.members for c in contenders(manifest)}
    assert got == {"cascade": ("s", "m"), "largest": ("l",), "most accurate": ("m",)}
    assert {c.role: c.members for c in contenders(manifest, ["s", "m"])}["most accurate & asked"] == ("m",)
    assert ("s",) in [c.members for c in contenders(manifest, ["s"]) if c.role == "asked"]
    with pytest.raises(EdgeCommitteeError, match="--member 'x': the bundle has no such member; its members: s, m"):
        contenders(manifest, ["x"])
    manifest["members"][2]["accuracy"]["validation"] = 0.95
    assert {c.role for c in contenders(manifest)} == {"cascade", "largest & most accurate"}


def test_build_with_a_latency_budget_profiles_then_selects(tiny_committee: Path, cache_dir: Path, fast_timing):
    text = tiny_committee.read_text().replace("macs: largest", "latency_ms: 50\n  batch: 4")
    tiny_committee.write_text(text)
    out = tiny_committee.parent / "o"
    assert main(["build", str(tiny_committee), "--out", str(out), "-q", "--cache-dir", str(cache_dir)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    key = fingerprint("onnxrt", 1)["key"]  # the spec's evaluation.threads
    assert manifest["profiles"][key]["file"] in manifest["files"]
    c = manifest["cascade"]
    assert c["cost_unit"] == "ms" and c["budget"] == 50 and c["cost_model"]["batch"] == 4 and c["worst_cost"] <= 50
    doc = json.loads((out / manifest["profiles"][key]["file"]).read_text())
    assert doc["batch_sizes"] == [1, 4, 8, 64] and doc["members"]["small"]["sha256"] == manifest["members"][0]["sha256"]
    assert main(["inspect", str(out)]) == 0


def test_a_budget_batch_needs_a_latency_budget(tiny_committee: Path, capsys):
    text = tiny_committee.read_text().replace("macs: largest", "macs: largest\n  batch: 8")
    tiny_committee.write_text(text)
    assert main(["build", str(tiny_committee), "--out", str(tiny_committee.parent / "o"), "-q"]) == 1
    assert "budget.batch: the batch size applies to a latency_ms budget only" in capsys.readouterr().err


def test_the_benchmark_script_runs_on_the_tiny_bundle(profiled_bundle: Path, tmp_path: Path, fast_timing):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cascade.py"
    spec = importlib.util.spec_from_file_location("bench_cascade", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "docs" / "latency"
    assert mod.main([str(profiled_bundle), "--threads", "1", "--batch", "1,4", "--limit", "16",
                     "--budget-limit", "16", "--rounds", "2", "--round-limit", "8", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert [r["batch"] for r in res["budgets"]] == [1, 4] and res["profile"]["seconds"] > 0
    assert all(r["predicted_worst_ms"] <= r["budget_ms"] for r in res["budgets"])
    text = out.with_suffix(".md").read_text()
    assert "## Worst-case latency budgets" in text and out.with_suffix(".png").is_file()
    assert {(e["batch"], e["rounds"]) for e in res["errors"]} == {(1, 2), (4, 2)}
    assert "## Cost model error, side by side" in text


def test_bench_runs_a_cascade_backend_with_its_own_profile(built_bundle: Path, tmp_path: Path):
    assert main(["profile", str(built_bundle), "--backend", "onnxrt-fused", "--batch", "2", "--threads", "1", "-q",
                 "--warmup", "0", "--min-iters", "3", "--min-time", "0", "--max-time", "0.02"]) == 0
    out = tmp_path / "bench"
    assert main(["bench", str(built_bundle), "--backend", "onnxrt-fused", "--threads", "1", "--batch", "2",
                 "--limit", "8", "--warmup", "1", "--out", str(out), "-q", "--no-plot"]) == 0
    doc = json.loads((out / "bench.json").read_text())
    assert doc["profile"] == fingerprint("onnxrt-fused", 1)["key"] and doc["backend"] == "onnxrt-fused"
    assert all(r["predicted"]["mean_ms"] > 0 for r in doc["results"])


def test_bench_out_refuses_files_it_did_not_write(built_bundle: Path, tmp_path: Path, capsys):
    """t3 L15/L16: --out an existing file was a FileExistsError traceback; a folder with the user's own
    bench.json was silently replaced. A bench folder written earlier is replaced; --limit 0 is refused."""
    base = ["bench", str(built_bundle), "--batch", "2", "--limit", "8", "--warmup", "0", "-q", "--no-plot"]
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    assert main(base + ["--out", str(mine)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file" in err and mine.read_text() == "mine", err
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "bench.json").write_text('{"my": "own"}')
    assert main(base + ["--out", str(folder)]) == 1
    err = capsys.readouterr().err.strip()
    assert "was not written by edge_committee" in err and "--force" in err, err
    assert (folder / "bench.json").read_text() == '{"my": "own"}'
    (folder / "bench.md").symlink_to(mine)  # a link is never followed, --force or not
    assert main(base + ["--out", str(folder), "--force"]) == 1
    assert "symbolic link" in capsys.readouterr().err and mine.read_text() == "mine"
    (folder / "bench.md").unlink()
    assert main(base + ["--out", str(folder), "--force"]) == 0
    assert main(base + ["--out", str(folder)]) == 0  # an earlier bench: replaced without --force
    assert json.loads((folder / "bench.json").read_text())["schema"].startswith("edge_committee.bench/")
    capsys.readouterr()
    assert main(base[:-4] + ["--limit", "0", "--out", str(tmp_path / "b0")]) == 1
    assert "--limit 0: must be an integer >= 1" in capsys.readouterr().err
