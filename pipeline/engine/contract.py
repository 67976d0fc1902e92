"""The stage contract: *what* a stage computes, with nothing about *where* it runs.

A stage is

1. ``plan()``: a list of independent ``ShardTask`` s, in a fixed order;
2. ``run_shard(task, out)``: a pure function of the task (its input files, the spec settings it reads, its
   seed) that writes its output files into the empty folder ``out`` and returns a small JSON-able result;
3. ``finish(results)``: one global step over the shard results (in plan order) and the shard folders, which
   assembles the stage's output: merge per-shard parts, LSH pairs -> clusters, quotas, ...

A stage whose shards need something costly to build (a model's weights, a fitted projection) defines
``load_worker_state()``: the executor calls it once per worker process (a local pool's worker, a Ray actor,
or this process for ``inline``) and passes its result to every ``run_shard(task, out, state)`` that worker
runs. The state must be a pure function of the stage's fields, so that the bytes do not depend on which
worker loaded it.

An executor (``pipeline.engine.executors``) decides where step 2 runs: in this process or in a pool of
workers. Because each task is pure and ``finish`` sees results in plan order, the bytes written do not
depend on the executor or the number of workers. The same split as datatrove's ``PipelineStep`` (what)
versus its executors (where), with shard outputs made atomic and resumable by the executor, not the stage.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from pipeline.config.typed import to_plain

R = TypeVar("R", covariant=True)


@dataclass(frozen=True)
class ShardTask:
    """One unit of a stage's work."""

    key: str                    # unique within the stage and usable as a file name, e.g. "gsm8k-00000"
    inputs: tuple[str, ...]     # the files it reads
    settings: Any               # the (frozen, picklable) spec settings it reads
    seed: int                   # from the spec's seed, the stage and the shard key (see ``shard_seed``)

    def fingerprint(self, stage: str, version: str) -> str:
        """What the task's output depends on. Input files are identified by path, size and modification
        time (hashing every byte of every input on each re-run would cost as much as a shard's work)."""
        files = []
        for path in self.inputs:
            try:
                st = os.stat(path)
                files.append([path, st.st_size, st.st_mtime_ns])
            except OSError:
                files.append([path, None, None])
        payload = {"stage": stage, "version": version, "key": self.key, "inputs": files,
                   "settings": to_plain(self.settings), "seed": self.seed}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def shard_seed(stage_seed: int, key: str) -> int:
    """A 63-bit seed for one shard from its stage's seed (``Spec.seed_for(stage)``) and its key."""
    digest = hashlib.sha256(f"{stage_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Stage(Protocol, Generic[R]):
    """What every sharded stage provides. Instances must pickle (workers receive them)."""

    name: str        # for messages and fingerprints
    version: str     # bump when the shard function's output changes, so old finished shards are redone
    work_dir: Path   # where finished shards and their done-markers wait for ``finish`` (kept across crashes)

    def plan(self) -> Sequence[ShardTask]: ...

    def run_shard(self, task: ShardTask, out: Path) -> dict: ...

    def finish(self, results: list[dict]) -> R: ...


class StageWithWorkerState(Stage[R], Protocol):
    """A stage whose shards share something loaded once per worker process (see the module docstring)."""

    def load_worker_state(self) -> Any: ...

    def run_shard(self, task: ShardTask, out: Path, state: Any) -> dict: ...  # type: ignore[override]


def has_worker_state(stage: Stage) -> bool:
    return callable(getattr(stage, "load_worker_state", None))
