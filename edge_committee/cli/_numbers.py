"""Every numeric command-line flag of every subcommand, checked in one place before a command runs.

argparse turns ``--lr -1`` into a float; whether -1, 0, NaN or 1e400 make sense is decided here,
from one table, so a wrong number is one line naming the flag, the value and the allowed range
(exit 1), never a traceback from deep inside PyTorch or a silently odd run. Cross-flag rules
(``--opt-batch`` <= ``--max-batch``) stay with the code that owns them.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from edge_committee.errors import EdgeCommitteeError


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values: ``lo``/``hi`` bounds (None: open), ``lo_open``: ``lo`` itself is excluded."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    what: str = ""  # the unit or meaning, for the message

    def allows(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return self.hi is None or v < self.hi or (not self.hi_open and v == self.hi)

    def describe(self, kind: str = "a finite number") -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        return kind + (" " + " and ".join(parts) if parts else "") + (f" ({self.what})" if self.what else "")


AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, lo_open=True)
FRACTION = Range(0, 1)
PORT = Range(0, 65535, what="a TCP port; 0 picks a free one")

#: dest -> Range for every command ("*") or (command, dest) -> Range for one (wins over "*").
RULES: dict = {
    ("*", "threads"): AT_LEAST_1,
    ("*", "max_frames"): AT_LEAST_1,
    ("*", "max_batch"): Range(1, 65536),
    ("*", "instances"): AT_LEAST_1,
    ("select", "budget_ms"): Range(0, what="ms"),
    ("select", "batch"): AT_LEAST_1,
    ("select", "max_members"): AT_LEAST_1,
    ("select", "stage_overhead"): NON_NEGATIVE,
    ("select", "confidence_level"): Range(0, 1, lo_open=True, hi_open=True, what="a probability, e.g. 0.9"),
    ("adapt", "min_confidence"): FRACTION,
    ("adapt", "per_class"): AT_LEAST_1,
    ("adapt", "epochs"): AT_LEAST_1,
    ("adapt", "lr"): POSITIVE,
    ("adapt", "batch_size"): AT_LEAST_1,
    ("adapt", "dropout"): Range(0, 1, hi_open=True, what="a probability"),
    ("adapt", "labeled_ratio"): NON_NEGATIVE,
    ("adapt", "tolerance"): Range(-1, 1, what="accuracy points; below 0 demands a gain"),
    ("adapt", "seed"): Range(0, 2**32 - 1),  # NumPy's seed range
    ("bench", "limit"): AT_LEAST_1,
    ("bench", "warmup"): NON_NEGATIVE,
    ("profile", "warmup"): Range(0, what="s"),
    ("profile", "min_iters"): AT_LEAST_1,
    ("profile", "min_time"): Range(0, what="s"),
    ("profile", "max_time"): Range(0, lo_open=True, what="s"),
    ("profile", "tolerance"): Range(0, 1, lo_open=True, what="relative"),
    ("compile", "opt_batch"): AT_LEAST_1,
    ("compile", "workspace_mb"): AT_LEAST_1,
    ("compile", "opt_level"): Range(0, 5),
    ("compile", "dla"): NON_NEGATIVE,
    ("export-triton", "queue_delay_us"): Range(0, 10**9, what="microseconds"),
    ("export-triton", "version"): Range(1, 2**30, what="a Triton version folder"),
    ("predict", "batch_size"): AT_LEAST_1,
    ("run", "loop"): Range(-1, what="extra plays of a file; -1 forever"),
    ("run", "clip_hop"): Range(1, what="frames between two clips"),
    ("run", "open_timeout"): Range(0, lo_open=True, what="s"),
    ("run", "stall_timeout"): Range(0, lo_open=True, what="s"),
    ("run", "max_reconnects"): NON_NEGATIVE,
    ("run", "window_ms"): Range(0, what="ms"),
    ("run", "staleness_ms"): Range(0, what="ms; 0 = never"),
    ("run", "stats_every"): Range(0, what="s; 0 = only at the end"),
    ("serve", "http_port"): PORT,
    ("serve", "grpc_port"): PORT,
    ("serve", "metrics_port"): PORT,
}

def rule_for(command: str, dest: str) -> Range | None:
    return RULES.get((command, dest), RULES.get(("*", dest)))


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_numbers(command: str, args: argparse.Namespace) -> None:
    """Raise one :class:`EdgeCommitteeError` for the first numeric flag outside its range."""
    for dest, value in sorted(vars(args).items()):
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        rule = rule_for(command, dest)
        if rule is None:
            continue
        if not rule.allows(float(value)):
            shown, kind = (f"{value:g}", "a finite number") if isinstance(value, float) else (str(value), "an integer")
            raise EdgeCommitteeError(f"{flag_name(dest)} {shown}: must be {rule.describe(kind)}")
