"""Spec section `execution` (owned by the engine): where a stage's shard tasks run.

It changes only speed, never bytes: the same spec on the same inputs writes identical outputs under
both engines and for any number of workers, so this section is not part of any asset's code version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from pipeline.config.ray_engine import RayConfig


def core_count() -> int:
    """Cores this process may run on (the affinity mask, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ExecutionConfig:
    # "local": a pool of worker processes on this machine; "inline": every task in the calling process
    # (for debugging with a breakpoint, or inside a process that may not start children).
    # "ray": every shard task as a Ray task on the cluster of `ray` (see pipeline/engine/ray_executor.py).
    engine: Literal["inline", "local", "ray"] = "local"
    ray: RayConfig = field(default_factory=RayConfig)
    # Worker processes for "local"; null means one per core.
    workers: int | None = None
    # How workers start: "forkserver" (a clean server process that has imported the stages once forks each
    # worker: ~0.1 s a worker instead of ~2 s of imports) or "spawn" (a fresh interpreter each; the fallback
    # where there is no forkserver). Never plain fork: forking a process with threads (Dagster, PyTorch,
    # Arrow pools) can deadlock.
    start_method: Literal["spawn", "forkserver"] = "forkserver"
    # A stage whose input files total less than this many bytes per extra worker uses fewer workers (and
    # under it, none: it runs inline): starting workers would cost more than they save.
    min_bytes_per_worker: int = 16 << 20

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be at least 1 (or null for one per core)")
        if self.min_bytes_per_worker < 0:
            raise ValueError("min_bytes_per_worker must not be negative")

    def worker_count(self) -> int:
        return self.workers if self.workers is not None else core_count()
