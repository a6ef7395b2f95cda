"""Export the example's members to ONNX and lay out its labelled images (run before the build).

    python examples/imagenet/prepare.py            # all four members
    python examples/imagenet/prepare.py --members efficientnet_lite0
    python examples/imagenet/prepare.py --zoo      # also each member at its second input size (zoo.yaml)

Writes under ``examples/imagenet/build/`` (git-ignored):

- ``members/<name>.onnx`` (and with ``--zoo`` ``members/<name>-r<size>.onnx``, the same weights at
  :data:`ZOO_SIZES`: the Lite models' "same" padding is fixed at export, so each input size is its
  own file): ``torch.onnx.export`` (TorchScript exporter, opset 17, dynamic batch)
  through :func:`edge_committee.export.export_onnx`, checked against PyTorch with ONNX Runtime;
- ``images/<class id>/<file>.jpg``: the 20 labelled ImageNet validation photos (512x512 JPEGs,
  the class id in the file name) that the PyPI package ``foolbox`` 3.3.4 ships in
  ``foolbox/data/imagenet_*.jpg``;
- ``labels.txt``: the 1000 class ids ``0`` .. ``999`` (the committee's labels).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
sys.path.insert(0, str(HERE))

import models  # noqa: E402


#: each member's second input size in the zoo (``zoo.yaml``): one step below its own
ZOO_SIZES = {"mobilenet_v2": 192, "efficientnet_lite0": 192, "efficientnet_lite1": 208, "efficientnet_lite2": 224}


def input_size(member: str) -> int:
    return 224 if member == "mobilenet_v2" else models.LITE_SIZES[member]


def export(member: str, out_dir: Path = BUILD / "members", size: int | None = None) -> Path:
    """Export ``member`` at its own input size, or at ``size`` as ``<member>-r<size>.onnx``."""
    from edge_committee.export import export_onnx

    s = size or input_size(member)
    path = out_dir / (f"{member}-r{size}.onnx" if size else f"{member}.onnx")
    export_onnx(models.build(member), (3, s, s), path, opset=17)
    return path


def imagenet_samples() -> list[tuple[Path, int]]:
    """(file, class id) of the ImageNet photos shipped by the PyPI package foolbox (not imported)."""
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the labelled sample images: pip install --no-deps foolbox==3.3.4")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    out = []
    for p in sorted(data.glob("imagenet_*.jpg")):
        m = re.fullmatch(r"imagenet_(\d+)_(\d+)\.jpg", p.name)
        if m:
            out.append((p, int(m.group(2))))
    return out


def lay_out_images(dest: Path = BUILD / "images") -> int:
    if dest.exists():
        shutil.rmtree(dest)
    samples = imagenet_samples()
    for path, label in samples:
        (dest / str(label)).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / str(label) / path.name)
    (BUILD / "labels.txt").write_text("".join(f"{i}\n" for i in range(1000)))
    return len(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", nargs="+", default=list(models.MEMBERS), choices=models.MEMBERS)
    ap.add_argument("--zoo", action="store_true", help="also export each member at its ZOO_SIZES size (zoo.yaml)")
    args = ap.parse_args()
    BUILD.mkdir(exist_ok=True)
    print(f"images: {lay_out_images()} labelled ImageNet photos from foolbox 3.3.4")
    for m in args.members:
        print(f"exported {export(m)}")
        if args.zoo:
            print(f"exported {export(m, size=ZOO_SIZES[m])}")


if __name__ == "__main__":
    main()
