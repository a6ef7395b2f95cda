"""The committee spec: YAML -> validated dataclasses, and per-member preprocessing."""

from edge_committee.spec.committee import Budget, CommitteeSpec, MemberSpec, load_spec, spec_from_dict
from edge_committee.spec.preprocess import Preprocessing

__all__ = ["Budget", "CommitteeSpec", "MemberSpec", "Preprocessing", "load_spec", "spec_from_dict"]
