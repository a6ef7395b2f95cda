"""Profiles inside a bundle: ``profiles/<fingerprint key>.json``, listed in ``manifest["profiles"]``.

Each device's profile lives beside the others (the build host's, a Jetson's...). A profile is
written with :func:`~edge_committee.bundle.edit_bundle`, so it is checksummed like every bundle
file and a crash or Ctrl-C leaves the bundle as it was; a hand-edited profile inside a bundle
fails the checksum, one outside fails the schema (:mod:`.schema`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from edge_committee._util import write_bytes_atomic
from edge_committee.bundle import edit_bundle
from edge_committee.errors import EdgeCommitteeError
from edge_committee.profile.costmodel import STAT_FOR_KIND, LatencyModel
from edge_committee.profile.fingerprint import describe, fingerprint, version_changes
from edge_committee.profile.schema import check_profile
from edge_committee.select.data import StageCosts

LOG = logging.getLogger("edge_committee")
PROFILES_DIR = "profiles"
_MAX_BYTES = 16 << 20  #: a profile of hundreds of member variants is well under 1 MiB


def profile_entry(doc: dict) -> dict:
    """The manifest's entry for a profile (``manifest["profiles"][name]``)."""
    return {
        "file": f"{PROFILES_DIR}/{doc['name']}.json",
        "created": doc.get("created"),
        "device": describe(doc["fingerprint"]),
        "batch_sizes": doc["batch_sizes"],
    }


def save_profile(folder: str | os.PathLike, doc: dict) -> Path:
    """Write ``doc`` to ``folder/profiles/<name>.json`` atomically (a bundle in the making)."""
    return write_bytes_atomic(Path(folder) / profile_entry(doc)["file"], (json.dumps(doc, indent=1) + "\n").encode())


def write_profile(root: str | os.PathLike, doc: dict) -> Path:
    """Add (or replace) ``doc`` as ``profiles/<name>.json`` in the bundle, atomically."""
    with edit_bundle(root) as ed:
        ed.add(profile_entry(doc)["file"])
        save_profile(ed.path, doc)
        ed.manifest.setdefault("profiles", {})[doc["name"]] = profile_entry(doc)
    return Path(root) / profile_entry(doc)["file"]


def latency_stage_costs(root: str | os.PathLike, manifest: dict, profile: str | os.PathLike | None, kind: str,
                        batch: int = 1, backend: str = "onnxrt", threads: int | None = None,
                        where: str | os.PathLike | None = None) -> StageCosts:
    """Selection costs for a latency budget of ``kind`` (``worst``/``mean``) at ``batch``, from
    ``profile`` (a name in the bundle or a file) or this device's profile (:func:`resolve_profile`)."""
    _, doc = resolve_profile(root, manifest, profile, backend, threads, where)
    model = LatencyModel.from_profile(doc, STAT_FOR_KIND[kind])
    return model.stage_costs([m["name"] for m in manifest["members"]], batch)


def is_legacy_profile(manifest: dict, profile: str | os.PathLike | None) -> bool:
    """True for an older hand-written profile file ``{"unit": "ms", "members": {name: ms}}``
    (read by :func:`edge_committee.select.load_profile`), not a device profile."""
    if profile is None or str(profile) in list_profiles(manifest) or not Path(profile).is_file():
        return False
    return not is_device_profile(profile)


def list_profiles(manifest: dict) -> dict[str, dict]:
    """name -> manifest entry of every profile in the bundle."""
    return dict(manifest.get("profiles") or {})


def read_profile(path: str | os.PathLike, shown: str | os.PathLike | None = None) -> dict:
    """Read and validate a profile file (new format; see :mod:`.schema`). ``shown``: the path that
    messages name (default ``path``; the user's bundle while ``path`` lies in its staging copy)."""
    shown = os.fspath(shown if shown is not None else path)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_BYTES + 1)
        if len(data) > _MAX_BYTES:
            raise EdgeCommitteeError(f"the latency profile {shown} is larger than {_MAX_BYTES >> 20} MiB; "
                                     "it is not a profile")
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except OSError as exc:
        raise EdgeCommitteeError(f"cannot read the latency profile {shown}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, or nested too deeply
        raise EdgeCommitteeError(f"the latency profile {shown} is not JSON: {exc}") from None
    return check_profile(doc, shown)


def _no_constant(name: str):
    """JSON's non-standard NaN/Infinity: a timing that is not a number would pass the schema's bounds."""
    raise ValueError(f"{name} is not a timing (a profile holds finite numbers only)")


def is_device_profile(path: str | os.PathLike) -> bool:
    """True for a device profile (``"schema": "edge_committee.profile/1"``), False for anything
    else, e.g. the older hand-written ``{"unit": "ms", "members": {...}}``."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(_MAX_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # the reader that follows says what is wrong
        return False
    return isinstance(doc, dict) and "schema" in doc and str(doc["schema"]).startswith("edge_committee.profile/")


def profile_command(root, backend: str, threads: int | None) -> str:
    extra = f" --backend {backend}" + (f" --threads {threads}" if threads else "")
    return f"edge-committee profile {root}{extra}"


def find_profile(root: str | os.PathLike, manifest: dict, backend: str = "onnxrt",
                 threads: int | None = None, where: str | os.PathLike | None = None) -> tuple[str, dict]:
    """(name, document) of this device's profile in the bundle, or one line saying which exist
    and the command that makes the missing one. ``where``: the bundle's name in messages
    (default ``root``; differs while the bundle is edited in a staging copy)."""
    where = where or root
    current = fingerprint(backend, threads)
    known = list_profiles(manifest)
    entry = known.get(current["key"])
    if entry is None and threads is None:  # `profile --threads N` names its profile ...-tN: find it
        entry, current = _any_thread_count(known, current, where, backend)
    if entry is None:
        have = "; ".join(f"{n} ({e.get('device', '?')})" for n, e in known.items()) or "none"
        raise EdgeCommitteeError(
            f"{where} has no latency profile for this device ({current['key']}: {describe(current)}); "
            f"profiles in the bundle: {have}; make one with: {profile_command(where, backend, threads)}"
        )
    doc = read_profile(Path(root) / entry["file"], Path(where) / entry["file"])
    stale = _stale_members(doc, manifest)
    if stale:  # e.g. `adapt` swapped a member's file after the profile timed the old one
        raise EdgeCommitteeError(
            f"{where}: the latency profile {current['key']} timed other files for members {', '.join(stale)} than "
            f"the bundle holds now (changed since it was measured, e.g. by adapt); re-profile with: "
            f"{profile_command(where, backend, threads)}")
    changes = version_changes(doc["fingerprint"], current)
    if changes:
        LOG.warning("warning: the profile %s was measured with other library versions (%s); re-profile if "
                    "latencies changed", current["key"], ", ".join(changes))
    return current["key"], doc


def _any_thread_count(known: dict, current: dict, where, backend: str) -> tuple[dict | None, dict]:
    """This device's one profile at whatever thread count (when no ``--threads`` was given); refuses,
    naming the flag, when there are several."""
    stem = current["key"].rsplit("-t", 1)[0] + "-t"
    mine = sorted(n for n in known if n.startswith(stem))
    if not mine:
        return None, current
    if len(mine) > 1:
        counts = ", ".join(n[len(stem):] for n in mine)
        raise EdgeCommitteeError(
            f"{where} has profiles of this device at several thread counts ({', '.join(mine)}); choose one with "
            f"--threads N (N one of {counts}) or --profile NAME")
    LOG.info("using the profile %s (this device, measured with threads %s)", mine[0], mine[0][len(stem):])
    return known[mine[0]], {**current, "key": mine[0]}


def resolve_profile(root: str | os.PathLike, manifest: dict, profile: str | os.PathLike | None,
                    backend: str = "onnxrt", threads: int | None = None,
                    where: str | os.PathLike | None = None) -> tuple[str, dict]:
    """The device profile to cost a selection with: ``profile`` (a name in the bundle or a file),
    else this device's. A profile of another device is used with a warning naming both."""
    where = where or root
    if profile is None:
        return find_profile(root, manifest, backend, threads, where)
    known = list_profiles(manifest)
    name = str(profile)
    if name in known:
        path, shown = Path(root) / known[name]["file"], Path(where) / known[name]["file"]
    else:
        path = shown = Path(profile)
        if not path.is_file():
            raise EdgeCommitteeError(
                f"latency profile {name!r} is neither a file nor a profile in {where} "
                f"(it has: {', '.join(known) or 'none'})"
            )
    doc = read_profile(path, shown)
    current = fingerprint(doc["fingerprint"]["backend"], doc["fingerprint"].get("threads"))
    if doc["fingerprint"]["key"] != current["key"]:
        LOG.warning("warning: the profile %s was measured on another device (%s); this device is %s (%s): "
                    "its latencies may not hold here", doc["name"], describe(doc["fingerprint"]),
                    current["key"], describe(current))
    _check_members(doc, manifest, shown)
    return doc["name"], doc


def _check_members(doc: dict, manifest: dict, path: Path) -> None:
    members = {m["name"]: m for m in manifest["members"]}
    missing = [n for n in members if n not in doc["members"]]
    if missing:
        raise EdgeCommitteeError(
            f"{path}: the profile has no timings for member {missing[0]!r} of this bundle "
            f"(it has {', '.join(doc['members'])}); profile this bundle with: edge-committee profile BUNDLE"
        )
    changed = _stale_members(doc, manifest)
    if changed:
        LOG.warning("warning: %s timed other files for members %s than this bundle holds", path, changed)


def _stale_members(doc: dict, manifest: dict) -> list[str]:
    """Members whose file's sha256 differs from the one the profile recorded when it timed them."""
    stale = []
    for m in manifest["members"]:
        timed = (doc.get("members") or {}).get(m["name"]) or {}
        if timed.get("sha256") not in ("", None, m.get("sha256")):
            stale.append(m["name"])
    return stale
