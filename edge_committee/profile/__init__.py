"""Latency on the target: profile a bundle on this device, cost cascades from it, bench them.

- :func:`profile_bundle` times every member variant (through the member-backend registry) and the
  runtime's per-stage overhead at several batch sizes (:mod:`.timing`: trtexec's method), with a
  device fingerprint (:mod:`.fingerprint`); :func:`write_profile` stores it in the bundle as
  ``profiles/<fingerprint key>.json``.
- :class:`LatencyModel` (:mod:`.costmodel`) turns a profile into a cascade's worst-case and mean
  latency at batch b, and into batch-aware selection costs (:func:`latency_stage_costs`).
- :mod:`.bench` runs the chosen cascade end to end next to single members (``edge-committee bench``).

Importing this package loads numpy only.
"""

from edge_committee.profile.costmodel import STAT_FOR_KIND, Curve, LatencyModel
from edge_committee.profile.fingerprint import fingerprint, fingerprint_key
from edge_committee.profile.profiler import (
    DEFAULT_BATCHES,
    parse_batches,
    profile_bundle,
    profile_members,
)
from edge_committee.profile.schema import SCHEMA, check_profile
from edge_committee.profile.store import (
    find_profile,
    is_legacy_profile,
    latency_stage_costs,
    list_profiles,
    profile_entry,
    read_profile,
    resolve_profile,
    save_profile,
    write_profile,
)
from edge_committee.profile.timing import Timing, TimingConfig, time_call

__all__ = [
    "DEFAULT_BATCHES",
    "SCHEMA",
    "STAT_FOR_KIND",
    "Curve",
    "LatencyModel",
    "Timing",
    "TimingConfig",
    "check_profile",
    "find_profile",
    "fingerprint",
    "fingerprint_key",
    "is_legacy_profile",
    "latency_stage_costs",
    "list_profiles",
    "parse_batches",
    "profile_bundle",
    "profile_entry",
    "profile_members",
    "read_profile",
    "resolve_profile",
    "save_profile",
    "time_call",
    "write_profile",
]
