"""The manifest's own integrity: its checksum, its schema, and paths confined to the bundle.

Every file of a bundle is checksummed in ``manifest["files"]``; the manifest itself carries
``manifest_sha256``, the sha256 of its canonical JSON without that key (:func:`manifest_digest`),
so a changed threshold, label or mean is caught like a changed member file. The digest detects
corruption and hand edits; it is not a signature (anyone who may write the bundle can recompute
it): pin the digest that ``edge-committee inspect`` prints if the bundle crosses a trust boundary.

:func:`parse_manifest` reads the JSON (bounded size and nesting), :func:`check_schema` checks the
type of every field a reader uses (one :class:`~edge_committee.errors.BundleError` line naming the
field), and :func:`check_paths` refuses any path that is absolute, holds ``..``, or resolves
(symlinks followed) outside the bundle, before any such file is opened.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from edge_committee.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
DIGEST_KEY = "manifest_sha256"
#: A manifest larger than this is not one we wrote (ours are a few kB to a few MB).
MAX_MANIFEST_BYTES = 32 << 20
#: Deepest JSON nesting accepted (ours is 5 levels deep).
MAX_DEPTH = 32
REQUIRED = ("schema_version", "name", "labels", "members", "cascade", "files")
MEMBER_REQUIRED = ("name", "file", "sha256", "macs", "preprocessing", "labels", "precision")
PRECISIONS = ("fp32", "fp16", "int8")
CASCADE_KINDS = ("single", "ensemble", "cascade", "learned_ensemble", "learned_cascade")
#: Member names: as a spec allows them (spec/committee.py), plus a precision suffix.
MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# ------------------------------------------------------------------------------ digest
def canonical_json(manifest: dict) -> bytes:
    """The bytes the digest covers: sorted keys, no whitespace, UTF-8, without ``manifest_sha256``."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_digest(manifest: dict) -> str:
    """sha256 (hex) of :func:`canonical_json`; stable across a JSON write and read."""
    return hashlib.sha256(canonical_json(manifest)).hexdigest()


def check_digest(path: Path, manifest: dict) -> str | None:
    """The problem with the manifest's own checksum, or None when it matches."""
    stored = manifest.get(DIGEST_KEY)
    if stored is None:
        return (f"{path}: has no {DIGEST_KEY} (written by an older edge_committee, or the field was "
                "removed); rebuild the bundle")
    if stored != manifest_digest(manifest):
        return (f"{path}: checksum mismatch (the manifest changed since the bundle was built: thresholds, "
                "labels or preprocessing may differ); rebuild the bundle")
    return None


# ------------------------------------------------------------------------------ parsing
def parse_manifest(path: Path) -> dict:
    """The manifest as a dict; any unreadable, oversized, malformed or too deep file is one BundleError."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path}: {size} bytes is too large for a manifest (at most {MAX_MANIFEST_BYTES})")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot read it ({exc})") from None
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise BundleError(f"{path}: JSON nested too deeply (not a manifest edge_committee wrote)") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if _depth(manifest) > MAX_DEPTH:
        raise BundleError(f"{path}: JSON nested deeper than {MAX_DEPTH} levels (not a manifest edge_committee wrote)")
    bad = _non_text(manifest)
    if bad is not None:
        raise BundleError(f"{path}: the string {bad!r} holds a lone UTF-16 surrogate escape (not text "
                          "edge_committee writes; the file was edited or corrupted): rebuild the bundle")
    return manifest


def _non_text(value: Any) -> str | None:
    """The first string (key or value) that is not encodable as UTF-8 (a lone surrogate), else None."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, x in v.items():
                if isinstance(k, str) and not _utf8(k):
                    return k[:60]
                stack.append(x)
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str) and not _utf8(v):
            return v[:60]
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _depth(value: Any, limit: int = MAX_DEPTH + 1) -> int:
    """Nesting depth of a parsed JSON value, counted up to ``limit`` (iterative: no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if d >= limit:
            return d
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
        stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def looks_like_ours(manifest: Any) -> str | None:
    """None if ``manifest`` has the shape of an edge_committee manifest, else what is missing."""
    if not isinstance(manifest, dict):
        return "it is not a JSON object"
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        return "it has no integer schema_version"
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        return f"it has no {missing[0]!r}"
    if not isinstance(manifest["files"], dict):
        return "its 'files' is not a mapping"
    return None


# ------------------------------------------------------------------------------ schema
def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _Checker:
    """Raises one BundleError naming the manifest and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, expected: str, value: Any) -> None:
        shown = json.dumps(value)[:60] if _is_jsonable(value) else type(value).__name__
        raise BundleError(f"{self.path}: {field} must be {expected}, got {shown}; rebuild the bundle")

    def text(self, field: str, value: Any, max_len: int = 1000) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len:
            self.fail(field, f"a non-empty string of at most {max_len} characters", value)
        if _CONTROL.search(value):
            self.fail(field, "free of control characters", value)
        return value

    def number(self, field: str, value: Any, optional: bool = False, minimum: float | None = None) -> None:
        if optional and value is None:
            return
        if not _is_number(value) or not math.isfinite(value) or (minimum is not None and value < minimum):
            bound = f" >= {minimum:g}" if minimum is not None else ""
            self.fail(field, f"a finite number{bound}" + (" or null" if optional else ""), value)

    def choice(self, field: str, value: Any, allowed: tuple) -> None:
        if value not in allowed or not isinstance(value, str):
            self.fail(field, "one of " + ", ".join(allowed), value)

    def mapping(self, field: str, value: Any) -> dict:
        if not isinstance(value, dict):
            self.fail(field, "a JSON object", value)
        return value

    def array(self, field: str, value: Any, min_len: int = 0) -> list:
        if not isinstance(value, list) or len(value) < min_len:
            self.fail(field, f"a list of at least {min_len} entries" if min_len else "a list", value)
        return value


def _is_jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def check_schema(path: Path, manifest: dict) -> None:
    """Check the type of every field a reader of the bundle uses; raise one BundleError line if wrong.

    Run after the schema version check and before any file is read.
    """
    ck = _Checker(path)
    for key in REQUIRED:
        if key not in manifest:
            raise BundleError(f"{path}: missing key {key!r}")
    ck.text("name", manifest["name"], 200)
    labels = ck.array("labels", manifest["labels"], 2)
    for i, label in enumerate(labels):
        ck.text(f"labels[{i}]", label)
    files = ck.mapping("files", manifest["files"])
    for rel, digest in files.items():
        ck.text("a key of files", rel, 4096)
        if not isinstance(digest, str) or not _HEX64.match(digest):
            ck.fail(f"files[{rel!r}]", "a sha256 (64 lowercase hex digits)", digest)
    members = ck.array("members", manifest["members"], 1)
    names: set[str] = set()
    for i, m in enumerate(members):
        name = _check_member(ck, i, m, labels)
        if name in names:
            raise BundleError(f"{path}: members[{i}]: the name {name!r} is used twice; rebuild the bundle")
        names.add(name)
        if isinstance(m["file"], str) and files.get(m["file"], m["sha256"]) != m["sha256"]:
            raise BundleError(f"{path}: members[{i}] ({name}): its sha256 {m['sha256'][:12]} is not that of its "
                              f"file {m['file']!r} ({files[m['file']][:12]} in files): the member points at another "
                              "member's file; rebuild the bundle")
    _check_cascade(ck, manifest["cascade"], names)
    if manifest.get("tensorrt") is not None:
        _check_tensorrt(ck, manifest["tensorrt"], names)
    _check_task(ck, manifest)
    for i, r in enumerate(ck.array("rejected_variants", manifest.get("rejected_variants", []))):
        for key in ("member", "precision", "reason"):
            ck.text(f"rejected_variants[{i}].{key}", ck.mapping(f"rejected_variants[{i}]", r).get(key), 10_000)


def _check_task(ck: _Checker, manifest: dict) -> None:
    """``task`` (classification when absent), a segmentation bundle's tile grid, a video bundle's clip and views."""
    task = manifest.get("task", "classification")
    ck.choice("task", task, ("classification", "segmentation", "video"))
    if task == "video":
        _check_video(ck, manifest)
    if task != "segmentation":
        return
    from edge_committee.cascade.tiles import TILE_CONFIDENCE

    seg = ck.mapping("segmentation", manifest.get("segmentation"))
    for key in ("tile", "frame"):
        v = seg.get(key)
        if not (isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x > 0 for x in v)):
            ck.fail(f"segmentation.{key}", "[height, width] in pixels", v)
    if not _is_int(seg.get("margin")) or seg["margin"] < 0:
        ck.fail("segmentation.margin", "an integer >= 0", seg.get("margin"))
    ck.choice("segmentation.confidence", seg.get("confidence"), tuple(TILE_CONFIDENCE))
    if seg["frame"][0] % seg["tile"][0] or seg["frame"][1] % seg["tile"][1]:
        ck.fail("segmentation.tile", f"a tile size that divides the frame {seg['frame']}", seg["tile"])


def _check_video(ck: _Checker, manifest: dict) -> None:
    """The clip length, and every member's view fitting in it."""
    clip = ck.mapping("video", manifest.get("video")).get("clip_frames")
    if not _is_int(clip) or clip < 1:
        ck.fail("video.clip_frames", "an integer >= 1", clip)
    for i, m in enumerate(manifest["members"]):
        view = ck.mapping(f"members[{i}].view", m.get("view"))
        if set(view) != {"frames", "stride"} or not all(_is_int(v) and v >= 1 for v in view.values()):
            ck.fail(f"members[{i}].view", "{frames: >= 1, stride: >= 1}", view)
        if (view["frames"] - 1) * view["stride"] + 1 > clip:
            ck.fail(f"members[{i}].view", f"a view that fits in the clip of {clip} frames", view)


def _check_member(ck: _Checker, i: int, m: Any, labels: list) -> str:
    where = f"members[{i}]"
    m = ck.mapping(where, m)
    for key in MEMBER_REQUIRED:
        if key not in m:
            raise BundleError(f"{ck.path}: {where} is missing key {key!r}")
    name = m["name"]
    if not isinstance(name, str) or not MEMBER_NAME.match(name):
        ck.fail(f"{where}.name", "a member name (letters, digits, '_', '.', '-'; at most 128)", name)
    where = f"members[{i}] ({name})"
    ck.text(f"{where}.file", m["file"], 4096)
    if not isinstance(m["sha256"], str) or not _HEX64.match(m["sha256"]):
        ck.fail(f"{where}.sha256", "a sha256 (64 lowercase hex digits)", m["sha256"])
    if not _is_int(m["macs"]) or m["macs"] < 0:
        ck.fail(f"{where}.macs", "an integer >= 0", m["macs"])
    ck.number(f"{where}.flops", m.get("flops", 0), minimum=0)
    ck.choice(f"{where}.precision", m["precision"], PRECISIONS)
    if m["labels"] is not None and m["labels"] != labels:
        ck.fail(f"{where}.labels", "null or the committee's labels", m["labels"])
    for split, acc in ck.mapping(f"{where}.accuracy", m.get("accuracy", {})).items():
        ck.number(f"{where}.accuracy.{split}", acc, optional=True, minimum=0)
    _check_preprocessing(ck, where, m)
    return name


def _check_preprocessing(ck: _Checker, where: str, m: dict) -> None:
    from edge_committee.errors import EdgeCommitteeError
    from edge_committee.spec.preprocess import Preprocessing

    try:
        pp = Preprocessing.from_dict(ck.mapping(f"{where}.preprocessing", m["preprocessing"]),
                                     f"{where}.preprocessing")
    except (EdgeCommitteeError, TypeError, ValueError, OverflowError) as exc:
        raise BundleError(f"{ck.path}: {str(exc)[:300]}; rebuild the bundle") from None
    shape = list(pp.input_shape(-1))
    if isinstance(m.get("view"), dict):  # a video member: its frames stacked as (N, C, T, H, W)
        shape = shape[:2] + [m["view"].get("frames")] + shape[2:]
    if "input_shape" in m and m["input_shape"] != shape:
        ck.fail(f"{where}.input_shape", f"{shape} (what its preprocessing makes)", m["input_shape"])


def _check_cascade(ck: _Checker, c: Any, names: set[str]) -> None:
    c = ck.mapping("cascade", c)
    for key in ("members", "thresholds", "confidence"):
        if key not in c:
            raise BundleError(f"{ck.path}: cascade is missing key {key!r}; rebuild the bundle or re-select")
    members = ck.array("cascade.members", c["members"], 1)
    if not all(isinstance(n, str) for n in members):
        ck.fail("cascade.members", "a list of member names", members)
    unknown = [n for n in members if n not in names]
    if unknown:
        raise BundleError(f"{ck.path}: the cascade names unknown members {unknown}")
    thresholds = ck.array("cascade.thresholds", c["thresholds"], len(members) - 1)
    for j, t in enumerate(thresholds):
        ck.number(f"cascade.thresholds[{j}]", t)
    from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS

    ck.choice("cascade.confidence", c["confidence"], CONFIDENCE_FUNCTIONS)
    ck.choice("cascade.kind", c.get("kind", "cascade"), CASCADE_KINDS)
    for key in ("val_accuracy", "test_accuracy", "mean_cost", "worst_cost", "test_mean_cost", "mean_macs",
                "worst_macs", "stage_overhead"):
        ck.number(f"cascade.{key}", c.get(key), optional=True)
    budget = c.get("budget")
    if not (budget is None or isinstance(budget, str) or (_is_number(budget) and math.isfinite(budget))):
        ck.fail("cascade.budget", "a finite number or a string", budget)
    for key in ("objective", "cost_unit", "reference"):
        if c.get(key) is not None:
            ck.text(f"cascade.{key}", c[key], 200)
    if c.get("combiner") is not None:  # a learned committee: one combiner file per stage
        files = ck.array("cascade.combiner.files", ck.mapping("cascade.combiner", c["combiner"]).get("files"),
                         len(members))
        if len(files) != len(members) or not all(isinstance(f, str) for f in files):
            ck.fail("cascade.combiner.files", f"{len(members)} file paths, one per stage", files)
    for key in ("exit_histogram", "test_exit_histogram"):
        hist = c.get(key)
        if hist is not None and not (isinstance(hist, list) and all(_is_int(h) and h >= 0 for h in hist)):
            ck.fail(f"cascade.{key}", "a list of counts", hist)


_FINGERPRINT_TEXT = ("tensorrt", "gpu", "compute_capability", "onnx_sha256")
_OPTION_INTS = ("max_batch", "opt_batch", "workspace_mb", "opt_level", "dla_core")


def _check_tensorrt(ck: _Checker, t: Any, names: set[str]) -> None:
    """The ``tensorrt`` section (compiled engines): every field the engine loader reads."""
    t = ck.mapping("tensorrt", t)
    for i, e in enumerate(ck.array("tensorrt.engines", t.get("engines", []))):
        where = f"tensorrt.engines[{i}]"
        e = ck.mapping(where, e)
        ck.text(f"{where}.file", e.get("file"), 4096)
        ck.choice(f"{where}.kind", e.get("kind", "member"), ("member", "cascade"))
        if e.get("kind", "member") == "member" and e.get("member") not in names:
            ck.fail(f"{where}.member", "the name of a member", e.get("member"))
        for key in ("max_batch",):
            if key in e and not (_is_int(e[key]) and e[key] >= 1):
                ck.fail(f"{where}.{key}", "an integer >= 1", e[key])
        fp = ck.mapping(f"{where}.fingerprint", e.get("fingerprint"))
        for key in _FINGERPRINT_TEXT:
            ck.text(f"{where}.fingerprint.{key}", fp.get(key), 200)
        if fp.get("plugin_sha256") is not None:
            ck.text(f"{where}.fingerprint.plugin_sha256", fp["plugin_sha256"], 200)
        ck.choice(f"{where}.fingerprint.typing", fp.get("typing", "strong"), ("strong", "weak"))
        options = ck.mapping(f"{where}.fingerprint.options", fp.get("options"))
        for key in _OPTION_INTS:
            value = options.get(key)
            if value is not None and not (_is_int(value) and value >= 0):
                ck.fail(f"{where}.fingerprint.options.{key}", "an integer >= 0 or null", value)
        if not isinstance(options.get("version_compatible", False), bool):
            ck.fail(f"{where}.fingerprint.options.version_compatible", "true or false", options["version_compatible"])
    for key, rel in ck.mapping("tensorrt.timing_caches", t.get("timing_caches", {})).items():
        ck.text(f"tensorrt.timing_caches[{key!r}]", rel, 4096)


# ------------------------------------------------------------------------------ paths
def bundle_relpath(rel: Any, where: str) -> PurePosixPath:
    """``rel`` as a relative POSIX path that stays inside the bundle (lexically); BundleError otherwise."""
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"{where}: {rel!r} is not a relative file path inside the bundle")
    p = PurePosixPath(rel)
    if p.is_absolute() or "\\" in rel or re.match(r"^[A-Za-z]:", rel) or ".." in p.parts or "\0" in rel:
        raise BundleError(
            f"{where}: the path {rel!r} leaves the bundle (absolute or '..'); a bundle only refers to its own "
            "files: rebuild it"
        )
    if rel == MANIFEST or not p.parts or p.parts == (".",):
        raise BundleError(f"{where}: {rel!r} is not a file of the bundle")
    return p


def resolve_in_bundle(root: str | os.PathLike, rel: Any, where: str = MANIFEST) -> Path:
    """The file ``rel`` of the bundle at ``root``, symlinks resolved; BundleError if it leaves the bundle.

    Nothing is opened: this only looks at names and links, so it is safe to call before reading.
    """
    p = bundle_relpath(rel, where)
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base / p))
    if target != base and base not in target.parents:
        raise BundleError(
            f"{where}: {rel!r} resolves to {target}, outside the bundle {base} (a symbolic link); copy the file "
            "into the bundle and rebuild it"
        )
    return Path(root) / p


def check_paths(root: Path, manifest: dict) -> None:
    """Refuse any path of ``files`` or of a member's ``file`` that leaves the bundle (see module doc)."""
    where = str(root / MANIFEST)
    for rel in manifest["files"]:
        resolve_in_bundle(root, rel, where)
    for m in manifest["members"]:
        resolve_in_bundle(root, m["file"], f"{where}: member {m['name']!r}")
        if m["file"] not in manifest["files"]:
            raise BundleError(f"{root / m['file']}: member {m['name']!r} file not listed in {MANIFEST}")
