"""Evaluation: member outputs on the data splits, cached on disk."""

from edge_committee._util import progress
from edge_committee.evaluate.cache import OutputCache, default_cache_dir, sha256_file
from edge_committee.evaluate.evaluate import accuracy, member_outputs, nonfinite_rows, run_member

__all__ = ["OutputCache", "accuracy", "default_cache_dir", "member_outputs", "nonfinite_rows", "progress", "run_member", "sha256_file"]
