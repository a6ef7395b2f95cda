"""The runner interface every backend implements (Polygraphy ``backend/base/runner.py`` style).

A runner is a context manager: ``activate`` loads the model (session, engine), ``infer`` runs one
batch, ``deactivate`` frees it. The base class validates inputs and outputs; subclasses override
only the ``*_impl`` methods.
"""

from __future__ import annotations

import abc
import logging
import time

import numpy as np

from edge_committee.errors import InputShapeError

LOG = logging.getLogger("edge_committee")


class BaseRunner(abc.ABC):
    """Runs one member: float32 input batch (N, ...) -> logits (N, C) float32."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_active = False
        #: wall time of the last ``infer`` call, in ms
        self.last_inference_ms: float | None = None
        #: device compute time of the last ``infer`` call in ms (e.g. from CUDA events), for
        #: backends that can tell it from the end-to-end time; None where they cannot
        self.last_compute_ms: float | None = None
        #: rank of the output: 2 for a classifier (N, C), 4 for a dense member (N, C, H, W)
        self.output_rank = 2

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> "BaseRunner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        if self.is_active:
            raise RuntimeError(f"runner {self.name!r} is already active")
        self.activate_impl()
        self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    # -- inference ------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; returns (N, C) logits."""
        if not self.is_active:
            raise RuntimeError(f"runner {self.name!r} is not active; use it as a context manager")
        batch = np.asarray(batch)
        if batch.ndim < 1:
            raise ValueError(f"{self.name}: a batch needs a leading batch dimension")
        expected = self.input_shape()
        if expected is not None and len(expected) == batch.ndim:
            for i, (e, got) in enumerate(zip(expected, batch.shape)):
                if i > 0 and isinstance(e, int) and e != got:
                    raise InputShapeError(
                        f"{self.name}: input has shape {batch.shape}, expected {tuple(expected)} "
                        f"(dimension {i} differs); check the member's preprocessing"
                    )
        if batch.shape[0] == 0 and self.output_rank == 2:
            return np.zeros((0, self.num_classes()), np.float32)
        start = time.perf_counter()
        out = np.asarray(self.infer_impl(batch))
        self.last_inference_ms = (time.perf_counter() - start) * 1e3
        if out.ndim != self.output_rank or out.shape[0] != batch.shape[0]:
            expected = "(batch, classes)" if self.output_rank == 2 else "(batch, classes, height, width)"
            raise RuntimeError(
                f"{self.name}: backend returned shape {out.shape} for a batch of {batch.shape[0]}; "
                f"expected {expected}"
            )
        return out

    # -- for subclasses -------------------------------------------------------------------
    @abc.abstractmethod
    def activate_impl(self) -> None: ...

    @abc.abstractmethod
    def deactivate_impl(self) -> None: ...

    @abc.abstractmethod
    def infer_impl(self, batch: np.ndarray) -> np.ndarray: ...

    def input_shape(self) -> tuple | None:
        """The input shape with symbolic dims as strings, or None if unknown."""
        return None

    def num_classes(self) -> int:
        raise NotImplementedError

    @classmethod
    def device_info(cls) -> dict:
        """The device this backend runs on, for profile fingerprints (e.g. ``{"gpu": name, "sm": "8.7"}``);
        empty for the host CPU (the default)."""
        return {}
