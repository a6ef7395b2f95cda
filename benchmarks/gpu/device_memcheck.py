"""A short device-runtime workload for compute-sanitizer: cascades in graph and host modes, checked.

Cascades with known logits (NaN/Inf rows, batch 1, odd, a full bucket; the CUDA gate and the
NVRTC kernels, conditional nodes open and closed), then, with ``EC_MEMCHECK_BUNDLE=1``, the example
bundle (``EC_EXAMPLE_BUNDLE``, if present) on 64 test images at batch 1, 7 and 64. Every result is compared with the NumPy
reference (the bundle's runs are only printed side by side; tests/backend compares them). Exit 0 = all
agree and no error was raised.

    compute-sanitizer --tool memcheck --error-exitcode 1 python3 benchmarks/gpu/device_memcheck.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "backend"), str(ROOT / "tests" / "gate")]

from device_cases import ID_PREPROCESSING, TableMember, assert_matches_reference, id_images, make_case  # noqa: E402

from edge_committee.backend.device import DeviceCascade  # noqa: E402


def table_cascades() -> int:
    runs = 0
    for mode in ("graph", "host"):
        for n, kind in ((1, "max_prob"), (7, "margin"), (16, "neg_entropy")):
            tables, thresholds, ref = make_case(seed=n, n=n, c=6, k=3, kind=kind)
            members = [TableMember(f"m{k}", t) for k, t in enumerate(tables)]
            with DeviceCascade(members, [ID_PREPROCESSING] * 3, thresholds, kind, [str(i) for i in range(6)],
                               device=0, mode=mode, max_batch=8) as runtime:
                assert runtime.mode == mode, runtime.mode_reason
                assert_matches_reference(runtime.run(id_images(n)), ref, f"{mode} n={n}")
            runs += 1
    return runs


def example_bundle() -> int:
    bundle = Path(os.environ.get("EC_EXAMPLE_BUNDLE", ROOT / "out" / "fashion_mnist"))
    images = Path(os.environ.get("EC_FMNIST_DIR", "/usr/share/datasets/fashion-mnist")) / "t10k-images-idx3-ubyte.gz"
    if not (bundle / "manifest.json").is_file() or not images.is_file():
        print(f"device_memcheck: no example bundle or images ({bundle}, {images}); skipped that part")
        return 0
    import edge_committee as ec
    from edge_committee.data.readers import read_idx

    x = read_idx(images)[:64]
    results = {}
    for mode in ("graph", "host"):
        with ec.load(bundle, backend="torch-cuda", mode=mode, max_batch=64) as model:
            for batch in (1, 7, 64):
                preds = [model.predict(x[s:s + batch]) for s in range(0, len(x), batch)]
                results[mode, batch] = np.concatenate([p.labels for p in preds]), np.concatenate(
                    [p.exit_stage for p in preds])
    first = results["graph", 64]
    for key, (labels, exits) in results.items():  # the exact comparison is pytest's job (tests/backend)
        differ = int(np.sum((labels != first[0]) | (exits != first[1])))
        print(f"device_memcheck: bundle {key[0]} batch {key[1]}: {differ} of {len(x)} differ from graph/64")
    return len(results)


def main() -> None:
    # the bundle part loads cuDNN under the sanitizer (tens of seconds): only when asked (EC_MEMCHECK_BUNDLE=1)
    runs = table_cascades() + (example_bundle() if os.environ.get("EC_MEMCHECK_BUNDLE") == "1" else 0)
    print(f"device_memcheck: {runs} cascade runs agree")


if __name__ == "__main__":
    main()
