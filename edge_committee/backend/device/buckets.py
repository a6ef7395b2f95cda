"""Which batch-size bucket each stage runs at, and which execution path a batch takes (plain Python).

Stages run at fixed shapes, so the survivors of a stage are padded to a *bucket* (a power of two by
default). Choosing the bucket **per stage** from the survivor count keeps the work of stage ``k``
proportional to its survivors; running every stage at the first stage's bucket (what an IF-only
conditional graph can do) costs the full batch at every stage whenever one sample survives.

Three paths run a batch of ``n`` samples (first bucket ``b0``), chosen by :func:`choose_path`:

- ``switch``: one CUDA graph; before stage ``k + 1`` a SWITCH conditional node (CUDA >= 12.8) picks
  the case of bucket :func:`switch_value` (survivors) -- per-stage buckets, no host wait;
- ``if``: one CUDA graph with IF nodes (CUDA >= 12.4): every later stage at ``b0``. Chosen only
  while ``b0 <= IF_GRAPH_MAX_BUCKET``, where padding costs less than a host round trip per stage;
- ``host``: the host loop: one replay per (stage, bucket) graph and one 4-byte read per stage.

The device kernel (``ec_fix_and_set`` in :mod:`.kernels`) computes :func:`switch_value` on the GPU;
the tests hold the two equal.
"""

from __future__ import annotations

from typing import Sequence

#: The largest first bucket for which the IF-only graph beats the host loop: padding every later
#: stage to ``b0`` costs at most ``b0`` small rows (batch 1..8 members are launch-bound), while a
#: host round trip costs ~45 us per stage (the H100 anchor). Above it, the host loop re-buckets.
IF_GRAPH_MAX_BUCKET = 8

PATHS = ("switch", "if", "host")


def default_buckets(max_batch: int) -> tuple[int, ...]:
    """Powers of two up to ``max_batch`` (and ``max_batch`` itself)."""
    out, b = [], 1
    while b < max_batch:
        out.append(b)
        b *= 2
    return tuple(out + [max_batch])


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``n`` samples (``buckets`` sorted ascending)."""
    for b in buckets:
        if b >= n:
            return b
    raise ValueError(f"{n} samples exceed the largest bucket {buckets[-1]}")


def switch_value(count: int, buckets: Sequence[int]) -> int:
    """The SWITCH value for ``count`` survivors: the index of their bucket, or ``len(buckets)`` (no case
    runs) when nobody survived. A SWITCH node runs no case for a value >= its number of cases."""
    if count <= 0:
        return len(buckets)
    for i, b in enumerate(buckets):
        if b >= count:
            return i
    raise ValueError(f"{count} samples exceed the largest bucket {buckets[-1]}")


def stage_buckets(counts: Sequence[int], buckets: Sequence[int], per_stage: bool = True) -> list[int]:
    """The bucket each stage runs at, for ``counts[k]`` samples entering stage ``k`` (``counts[0] = n``).

    Stages after the first one with no samples do not run (the list stops there). ``per_stage``
    False: every stage at the first stage's bucket (the IF-only graph).
    """
    out: list[int] = []
    for k, c in enumerate(counts):
        if c <= 0:
            break
        out.append(bucket_for(c, buckets) if per_stage or k == 0 else out[0])
    return out


def stage_work(counts: Sequence[int], buckets: Sequence[int], costs: Sequence[float] | None = None,
               per_stage: bool = True) -> float:
    """Work done by the members: sum over the stages that run of ``cost_k x bucket_k`` (cost per sample;
    default 1 per sample)."""
    bs = stage_buckets(counts, buckets, per_stage)
    costs = costs or [1.0] * len(counts)
    return float(sum(c * b for c, b in zip(costs, bs)))


def choose_path(b0: int, switch_ok: bool, if_ok: bool, max_if_bucket: int = IF_GRAPH_MAX_BUCKET) -> str:
    """The path a batch whose first bucket is ``b0`` takes in graph mode (see the module docstring)."""
    if switch_ok:
        return "switch"
    if if_ok and b0 <= max_if_bucket:
        return "if"
    return "host"
