"""Where shard tasks run: ``inline`` (this process) or ``local`` (a pool of worker processes).

``run_stage`` is the only entry point. For each planned task it first looks for a finished shard: a folder
``<work_dir>/shards/<key>/`` and a done-marker ``<work_dir>/done/<key>.json`` holding the task's fingerprint
and result. The marker is written only after the shard's folder is renamed into place, so a shard with a
marker is complete; a crash mid-shard leaves only a temporary folder, which the next run replaces. Tasks
whose marker is missing or stale (other inputs, settings, seed or version) run again; the rest are reused.
Results are gathered in plan order whatever order workers finish in, and ``finish`` runs once, here.

A stage with ``load_worker_state`` gets it built once per worker process (``worker_state``): the local pool's
workers keep it for every task they run; ``inline`` builds it here and drops it when the stage is done.

The local pool outlives a stage: a process that runs several stages (a stage per domain, or `curamix run`'s whole
graph) starts its workers once; tasks travel in small groups, and each worker unpickles a stage once.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from pipeline.config.execution import ExecutionConfig, core_count
from pipeline.diskspace import as_disk_full, is_disk_full
from pipeline.engine.contract import ShardTask, Stage, has_worker_state
from pipeline.store import atomic_dir, atomic_file

log = logging.getLogger(__name__)
R = TypeVar("R")


@dataclass(frozen=True)
class ShardDone:
    """What a run of one task left behind (returned to the parent process)."""

    key: str
    result: dict
    reused: bool


def shard_dir(stage: Stage, key: str) -> Path:
    return stage.work_dir / "shards" / key


def marker_path(stage: Stage, key: str) -> Path:
    return stage.work_dir / "done" / f"{key}.json"


def finished(stage: Stage, task: ShardTask) -> dict | None:
    """The stored result of ``task`` if its shard is complete and was made from the same inputs."""
    marker = marker_path(stage, task.key)
    if not marker.exists() or not shard_dir(stage, task.key).is_dir():
        return None
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return done["result"] if done.get("fingerprint") == task.fingerprint(stage.name, stage.version) else None


# This process's worker state, under the key of the stage it was loaded for. One entry: a worker that moves on to
# another stage releases the previous stage's model before loading the next.
_WORKER_STATE: dict[str, Any] = {}


def pickled(stage: Stage) -> tuple[str, bytes]:
    """The stage pickled, and the sha256 of those bytes: what identifies a stage's value across processes."""
    blob = pickle.dumps(stage, protocol=5)
    return hashlib.sha256(blob).hexdigest(), blob


def state_key(stage: Stage) -> str:
    """What a worker state is cached under: the stage's own value (its fields pickled), so that a stage with other
    inputs or settings never receives a state loaded for another (stages carry paths and settings, not models)."""
    return pickled(stage)[0]


def worker_state(stage: Stage) -> Any:
    """``stage.load_worker_state()``, built once per process for a given stage value."""
    key = state_key(stage)
    if key not in _WORKER_STATE:
        _WORKER_STATE.clear()
        _WORKER_STATE[key] = stage.load_worker_state()  # type: ignore[attr-defined]
    return _WORKER_STATE[key]


def release_worker_state() -> None:
    _WORKER_STATE.clear()


def run_task(stage: Stage, task: ShardTask) -> ShardDone:
    """Run one task into a temporary folder, rename it into place, then write its done-marker."""
    marker_path(stage, task.key).unlink(missing_ok=True)
    with atomic_dir(shard_dir(stage, task.key)) as out:
        if has_worker_state(stage):
            result = stage.run_shard(task, out, worker_state(stage))  # type: ignore[call-arg]
        else:
            result = stage.run_shard(task, out)
    with atomic_file(marker_path(stage, task.key)) as tmp:
        tmp.write_text(json.dumps({"fingerprint": task.fingerprint(stage.name, stage.version), "result": result},
                                  sort_keys=True))
    return ShardDone(task.key, result, reused=False)


def _in_daemon() -> bool:
    # A daemonic process (some executors run steps in one) may not start children.
    return multiprocessing.current_process().daemon


# The stage modules a forkserver may import once, before it forks workers (``preload_modules`` picks from them).
STAGE_MODULES = ["pipeline.staging", "pipeline.curation.keys", "pipeline.curation.write", "proxies.bins",
                 "pipeline.emission.tokenize_stage", "pipeline.pruning.embed", "pipeline.pruning.clusters",
                 "pipeline.pruning.run", "proxies.scoring", "proxies.sweep_stage"]


def import_stage_modules() -> None:
    """Import every stage module (the Ray engine's worker setup hook: a Ray worker then runs any stage's first shard
    without ~1.5 s of imports, as a local worker forked from a preloaded forkserver does)."""
    import importlib

    for module in STAGE_MODULES:
        importlib.import_module(module)


def preload_modules(stage: Stage | None) -> list[str]:
    """What this process's forkserver imports before forking any worker: the stage's own module and the stage
    modules this process has already imported. A Dagster step has imported the whole code location, so its workers
    get every stage ready (torch included); a process that only stages files does not pay ~1.2 s for torch. No
    stage (``start_engine``, ahead of stages not known yet): every stage module."""
    import sys

    if stage is None:
        return list(STAGE_MODULES)
    return sorted({type(stage).__module__} | {m for m in STAGE_MODULES if m in sys.modules})


def _context(start_method: str, stage: Stage | None):
    if start_method == "forkserver" and "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(preload_modules(stage))  # no effect once this process's server runs
        return context
    return multiprocessing.get_context("spawn")


def worker_count(execution: ExecutionConfig, tasks: Sequence[ShardTask]) -> int:
    """Workers worth starting: at most one per task, and one per ``min_bytes_per_worker`` of input."""
    total = sum(os.stat(p).st_size for p in {p for t in tasks for p in t.inputs} if os.path.isfile(p))
    by_size = 1 + total // execution.min_bytes_per_worker if execution.min_bytes_per_worker else len(tasks)
    return max(1, min(execution.worker_count(), len(tasks), by_size))


# In a local pool's worker: the stage its tasks belong to, unpickled once per worker and stage (a stage carries its
# spec: unpickling it with each of a few hundred small tasks cost more than the tasks did).
_WORKER_STAGE: tuple[str, Stage] | None = None


def _start_worker(threads: int) -> None:
    # The tokenizer's Rust thread pool sizes itself to every core when first used; a worker takes its share, so
    # that workers x threads = cores (oversubscribed, two workers tokenized no faster than one process did).
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))


def _run_batch(key: str, blob: bytes, tasks: Sequence[ShardTask]) -> list[ShardDone]:
    global _WORKER_STAGE
    if _WORKER_STAGE is None or _WORKER_STAGE[0] != key:
        _WORKER_STAGE = (key, pickle.loads(blob))
    return [run_task(_WORKER_STAGE[1], task) for task in tasks]


def batches(tasks: Sequence[ShardTask], workers: int, *, per_worker: int = 8) -> list[list[ShardTask]]:
    """Consecutive tasks in groups, about ``per_worker`` groups per worker: one round trip per group instead of per
    task (staging plans a task per input file), with enough groups left to even out their sizes."""
    size = max(1, len(tasks) // (workers * per_worker))
    return [list(tasks[i : i + size]) for i in range(0, len(tasks), size)]


@dataclass
class _Pool:
    executor: ProcessPoolExecutor
    workers: int
    start_method: str


# This process's pool, kept from one stage to the next (staging runs a stage per domain; `curamix run` runs the
# whole graph in one process), so workers start once. It is closed after a stage whose workers loaded a model, so
# that no idle worker keeps one, and replaced when a stage wants another worker count or a worker died.
_POOL: _Pool | None = None


def _pool(stage: Stage | None, workers: int, start_method: str) -> ProcessPoolExecutor:
    global _POOL
    if _POOL is not None and (_POOL.workers, _POOL.start_method) == (workers, start_method) \
            and not getattr(_POOL.executor, "_broken", False):
        return _POOL.executor
    close_pool()
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=_context(start_method, stage),
                                   initializer=_start_worker, initargs=(max(1, core_count() // workers),))
    _POOL = _Pool(executor, workers, start_method)
    return executor


def close_pool() -> None:
    """Stop this process's worker pool, if there is one (waiting for its workers to exit)."""
    global _POOL
    if _POOL is not None:
        _POOL.executor.shutdown(wait=True, cancel_futures=True)
        _POOL = None


atexit.register(close_pool)


def start_engine(execution: ExecutionConfig) -> None:
    """Start the engine's workers now (``local``: this process's pool; ``ray``: the driver's actors), so that the
    first stage does not wait for them; nothing for ``inline``. For a driver that knows it will run stages (a
    benchmark, a notebook); a stage starts what it needs by itself."""
    if execution.engine == "ray":
        from pipeline.engine.ray_executor import start_actors

        start_actors(execution.ray)
    elif execution.engine == "local" and execution.worker_count() > 1 and not _in_daemon():
        pool = _pool(None, execution.worker_count(), execution.start_method)
        wait([pool.submit(os.getpid) for _ in range(execution.worker_count())])


def _map_local(stage: Stage, tasks: Sequence[ShardTask], *, workers: int, start_method: str) -> Iterator[ShardDone]:
    """``run_task(stage, t)`` for ``tasks`` in the process pool; yields results in task order (the first error, in
    task order, is raised after the tasks not yet started are cancelled and the running ones finished)."""
    pool = _pool(stage, workers, start_method)
    key, blob = pickled(stage)
    futures = [pool.submit(_run_batch, key, blob, batch) for batch in batches(tasks, workers)]
    try:
        for future in futures:
            yield from future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        wait(futures)  # nothing may keep writing into the work folder once the stage has failed
        if getattr(pool, "_broken", False):
            close_pool()
        raise
    finally:
        if has_worker_state(stage):
            close_pool()


def run_stage(stage: Stage[R], *, execution: ExecutionConfig | None = None,
              progress: Callable[[str], None] | None = None) -> R:
    """Plan ``stage``, run its unfinished tasks on the configured engine, then its global step."""
    execution = execution or ExecutionConfig()
    tasks = list(stage.plan())
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError(f"stage {stage.name}: shard keys are not unique")
    results: dict[str, dict] = {}
    todo = []
    for task in tasks:
        reused = finished(stage, task)
        if reused is None:
            todo.append(task)
        else:
            results[task.key] = reused
    if len(results) and progress:
        progress(f"{stage.name}: reusing {len(results)} finished shard(s) of {len(tasks)}")
    workers = worker_count(execution, todo)
    try:
        if execution.engine == "ray" and todo:
            from pipeline.engine.ray_executor import map_ray  # ray is an optional extra: imported only here
            done_iter = map_ray(stage, todo, execution.ray)
        elif execution.engine == "inline" or workers <= 1 or _in_daemon():
            done_iter = map(partial(run_task, stage), todo)
        else:
            done_iter = _map_local(stage, todo, workers=workers, start_method=execution.start_method)
        for i, done in enumerate(done_iter, 1):
            results[done.key] = done.result
            if progress:
                progress(f"{stage.name}: shard {done.key} done ({i}/{len(todo)})")
        release_worker_state()  # an inline run's model is not held while the global step runs
        outcome = stage.finish([results[k] for k in keys])
    except Exception as exc:
        if not is_disk_full(exc):
            raise  # finished shards stay for the re-run
        # A full disk: the re-run needs the space more than the finished shards, and nothing partial may stay.
        shutil.rmtree(stage.work_dir, ignore_errors=True)
        raise as_disk_full(exc, stage.work_dir) from exc
    finally:
        release_worker_state()
    shutil.rmtree(stage.work_dir, ignore_errors=True)
    return outcome
