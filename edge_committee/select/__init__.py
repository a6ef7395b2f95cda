"""Model selection: which committee (single member, ensemble or cascade), which member order and
which thresholds meet an accuracy or cost budget — pure functions over cached member outputs.

Entry points: :func:`select_cascade` (one call: frontier, then an objective) and the lower-level
:func:`frontier` and :func:`choose`; :func:`write_report` writes the PNG / Markdown / JSON report.
The threshold search and its exactness bound are described in :mod:`.search` and docs/selection.md.
"""

from edge_committee.select.data import (
    CostProfile,
    SelectionData,
    load_outputs_npz,
    load_profile,
)
from edge_committee.select.frontier import (
    CASCADE_KINDS,
    KINDS,
    LEARNED_KINDS,
    SEARCHES,
    Candidate,
    Frontier,
    frontier,
)
from edge_committee.select.guided import SearchInfo, frontier_gap
from edge_committee.select.learned import CombinerConfig
from edge_committee.select.objective import (
    ALWAYS_EXIT,
    NEVER_EXIT,
    OBJECTIVES,
    SelectionResult,
    choose,
    select_cascade,
    select_from,
)
from edge_committee.select.report import write_report
from edge_committee.select.search import DEFAULT_GRID, SequenceFront, pareto_indices

__all__ = [
    "ALWAYS_EXIT",
    "CASCADE_KINDS",
    "CombinerConfig",
    "LEARNED_KINDS",
    "DEFAULT_GRID",
    "KINDS",
    "NEVER_EXIT",
    "OBJECTIVES",
    "SEARCHES",
    "SearchInfo",
    "Candidate",
    "CostProfile",
    "Frontier",
    "SelectionData",
    "SelectionResult",
    "SequenceFront",
    "choose",
    "frontier",
    "frontier_gap",
    "load_outputs_npz",
    "load_profile",
    "pareto_indices",
    "select_cascade",
    "select_from",
    "write_report",
]
