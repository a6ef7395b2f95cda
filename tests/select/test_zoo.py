"""A zoo: members at three precisions and two input resolutions, selected together (issue 19, item 6).

The tiny committee of ``tests/conftest.py`` (three linear ONNX members at fixed input sizes) plus a
member of any input size (a 1x1 convolution to grey, then the mean of each quadrant) run at 12 and
at 8 pixels (``shares: pool``), built with ``precision: auto``: every member at FP32, FP16 and INT8
(each variant the accuracy gate accepts). The groups rule: one model at several precisions is never
twice in a cascade or ensemble, while one model at two resolutions may be (a self-cascade). The
Fashion-MNIST zoo (``examples/fashion_mnist/zoo.yaml``) is the same construction at full size.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from edge_committee.select import SelectionData, frontier
from edge_committee.select.frontier import KINDS


def pool_member(path):
    """(batch, 3, H, W) -> 4 logits: 40 x the mean grey level of each quadrant (any even H, W)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Conv", ["input", "w"], ["gray"]),
             helper.make_node("Split", ["gray"], ["top", "bottom"], axis=2, num_outputs=2)]
    quads = []
    for half in ("top", "bottom"):
        nodes.append(helper.make_node("Split", [half], [f"{half}L", f"{half}R"], axis=3, num_outputs=2))
        for side in "LR":
            nodes.append(helper.make_node("ReduceMean", [f"{half}{side}", "axes"], [f"m{half}{side}"], keepdims=0))
            quads.append(f"m{half}{side}")
    nodes += [helper.make_node("Concat", quads, ["cat"], axis=1),
              helper.make_node("Mul", ["cat", "k"], ["logits"])]
    w = np.array([0.30, 0.35, 0.35], np.float32).reshape(1, 3, 1, 1)
    graph = helper.make_graph(
        nodes, "pool", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
         numpy_helper.from_array(np.array(40.0, np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def zoo_bundle(tmp_path_factory, tiny_committee_factory):
    from edge_committee.pipeline import build

    root = tmp_path_factory.mktemp("zoo")
    spec_path = tiny_committee_factory(root)
    spec = yaml.safe_load(spec_path.read_text())
    pool_member(root / "pool.onnx")
    pp = {"size": [12, 12], "color": "rgb", "mean": [0.5], "std": [0.25]}
    spec["members"] += [{"name": "pool", "onnx": "pool.onnx", "preprocessing": pp},
                        {"name": "pool-r8", "shares": "pool", "preprocessing": {**pp, "size": [8, 8]}}]
    spec["precision"] = {"mode": "auto", "tolerance": 5.0}
    spec["calibration"] = {"source": {"kind": "split", "format": "npz", "path": "val.npz"}, "count": 64, "seed": 0}
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = root / "bundle"
    build(spec_path, out, cache_dir=root / "cache", log=lambda s: None)
    return out


def _zoo_data(bundle) -> tuple[SelectionData, dict]:
    m = json.loads((bundle / "manifest.json").read_text())
    base = {x["name"]: x["base"] for x in m["members"]}
    with np.load(bundle / "outputs.npz") as z:
        val = {n: z[f"{n}/validation"] for n in base}
        test = {n: z[f"{n}/test"] for n in base}
        labels = z["labels/validation"], z["labels/test"]
    macs = {x["name"]: x["macs"] for x in m["members"]}
    return SelectionData(val, test, macs, *labels, groups=base), m


def test_the_zoo_has_every_precision_and_both_resolutions(zoo_bundle):
    m = json.loads((zoo_bundle / "manifest.json").read_text())
    got = {(x["base"], x["precision"]) for x in m["members"]}
    rejected = {(r["member"], r["precision"]) for r in m["rejected_variants"]}
    for base in ("small", "medium", "large", "pool", "pool-r8"):
        for precision in ("fp32", "fp16", "int8"):
            assert (base, precision) in got | rejected, (base, precision)
    assert len(got) >= 10  # most variants pass the gate
    shares = next(x for x in m["members"] if x["name"] == "pool-r8")
    assert shares["preprocessing"]["size"] == [8, 8] and shares["macs"] < min(
        x["macs"] for x in m["members"] if x["base"] == "pool")


def test_one_model_at_two_precisions_is_never_paired_but_two_resolutions_are(zoo_bundle):
    data, manifest = _zoo_data(zoo_bundle)
    front = frontier(data, max_len=3)
    t = front.table()
    seen_self_cascade = False
    for kind, group, point in zip(t["kind"], t["group"], t["point"]):
        if KINDS[int(kind)] == "single":
            continue
        c = front.candidate(int(kind), int(group), int(point))
        bases = [data.group_of(n) for n in c.members]
        assert len(set(bases)) == len(bases), c.label  # the groups rule
        seen_self_cascade |= {"pool", "pool-r8"} <= set(bases)
    assert seen_self_cascade  # pool's model at 8 px and at 12 px may share a cascade
    chosen = manifest["cascade"]["members"]
    assert len({data.group_of(n) for n in chosen}) == len(chosen)
    # without the rule the same search pairs a model with itself at another precision
    free = frontier(SelectionData(data.val_logits, data.test_logits, data.costs, data.val_labels,
                                  data.test_labels), max_len=2)
    pairs = [c.members for c in free.cascades]
    assert any(len({data.group_of(n) for n in p}) < len(p) for p in pairs)


def test_the_plot_names_a_model_at_several_precisions_once(zoo_bundle):
    from edge_committee.select.report import _annotate_singles

    data, _ = _zoo_data(zoo_bundle)
    front = frontier(data, max_len=2)
    singles = [front.candidate("single", i) for i in range(len(front.singles))]
    texts = []
    ax = type("Ax", (), {"annotate": lambda self, text, *a, **k: texts.append(text)})()
    _annotate_singles(ax, front, singles, [c.mean_cost for c in singles], [c.val_accuracy for c in singles])
    per_group = {}
    for name in data.names:
        per_group[data.group_of(name)] = per_group.get(data.group_of(name), 0) + 1
    assert sorted(texts) == sorted(g if n == 1 else f"{g} x{n}" for g, n in per_group.items())
