"""The cascade runtime: load a bundle and predict with early exit."""

from edge_committee.runtime.cascade import CascadeModel, Prediction

__all__ = ["CascadeModel", "Prediction"]
