"""Serving a bundle beyond one process: :mod:`edge_committee.serve.triton` (Triton Inference Server)."""
