"""The `ray` engine: a stage's shard tasks as Ray tasks on a Ray cluster whose nodes mount the data root.

Only *where* changes. Each task runs ``executors.run_task`` on a Ray worker, which writes the shard's
folder and done-marker on the shared data root exactly as a local worker does; results come back in
plan order and the stage's global step (``finish``) runs here, on the driver. The stage object is put in
Ray's object store once and shared by all its tasks. Ray reuses worker processes, so what a stage caches
per process (a parsed tokenizer) is loaded once per worker, not once per shard. A stage with
``load_worker_state`` (a model: embeddings, difficulty scores) runs on a pool of Ray actors instead: each actor
loads the state once when it starts and runs shard after shard with it (``ShardWorker``); an actor that dies is
restarted (loading again) and its task re-run, ``max_retries`` times.

Faults: a task whose worker process or node dies is re-run by Ray (``max_retries``); its earlier attempt
left at most a temporary folder, never a marker, so the retry writes the same bytes. An exception raised
by a task (bad input) is not retried: it is unwrapped from Ray's ``RayTaskError`` and raised here as the
original exception, whose message names the file and line, with a note saying which shard and where.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

try:
    import ray
    import ray.exceptions
except ImportError as exc:  # the engine is optional: curamix runs without ray installed
    raise ImportError("execution.engine 'ray' needs Ray: pip install 'curamix[ray]' (or ray==2.60.0)") from exc

from pipeline.config.execution import core_count
from pipeline.config.ray_engine import RayConfig
from pipeline.engine.contract import ShardTask, Stage, has_worker_state
from pipeline.engine.executors import ShardDone, run_task, worker_state

log = logging.getLogger(__name__)

# This job's workers import every stage module when they start (as the local engine's forkserver does before it
# forks workers): otherwise the first shard of each stage a worker runs pays its imports (torch: ~1.5 s), which
# made sub-second stages (concept clusters, pruning) several times slower than under `local`.
RUNTIME_ENV = {"worker_process_setup_hook": "pipeline.engine.executors.import_stage_modules"}

# The address this module connected to (None: not connected by us; a driver may have called ray.init itself).
_connected: str | None = None


def connect(config: RayConfig) -> None:
    """Join (or for ``local`` start) the configured cluster once per process; reconnect if the address
    changes. A Ray session that someone else started in this process (``ray.init`` in a notebook) is used."""
    global _connected
    if ray.is_initialized():
        if _connected is None or _connected == config.address:
            return
        ray.shutdown()
    if config.address == "local":
        ray.init(num_cpus=config.local_num_cpus or core_count(), include_dashboard=False,
                 object_store_memory=config.local_object_store_mb and config.local_object_store_mb << 20,
                 _temp_dir=config.local_temp_dir or tempfile.mkdtemp(prefix="curamix-ray-"), runtime_env=RUNTIME_ENV)
    else:
        try:
            ray.init(address=config.address, runtime_env=RUNTIME_ENV)
        except ConnectionError as exc:
            raise ConnectionError(f"execution.ray.address {config.address!r}: no Ray cluster answers there ({exc}); "
                                  "start one (`ray start --head`) or set address: local") from None
    _connected = config.address
    log.info("ray engine: connected to %s (%s)", config.address, ray.cluster_resources())


def disconnect() -> None:
    """Leave the cluster (and stop a ``local`` one) if this module connected."""
    global _connected
    if _connected is not None and ray.is_initialized():
        ray.shutdown()
    _connected = None


def _run_shard(stage: Stage, task: ShardTask) -> ShardDone:
    return run_task(stage, task)


_remote_run_shard = ray.remote(_run_shard)


def _options(stage: Stage, task: ShardTask, config: RayConfig) -> dict:
    options = dict(num_cpus=config.num_cpus_per_task, num_gpus=config.num_gpus_per_task,
                   max_retries=config.max_retries, retry_exceptions=False,
                   # Shown as the worker's process title (ray::<name>) and in Ray's task list.
                   name=f"curamix.{stage.name}.{task.key}")
    if config.memory_per_task_mb:
        options["memory"] = config.memory_per_task_mb << 20
    return options


class ShardWorker:
    """A Ray actor that loads a stage's worker state once, then runs shard tasks with it."""

    def __init__(self, stage: Stage):
        self.stage = stage
        worker_state(stage)  # cached in this actor's process for every task it runs

    def run(self, task: ShardTask) -> ShardDone:
        return run_task(self.stage, task)


_RemoteShardWorker = ray.remote(ShardWorker)


def actor_count(config: RayConfig, tasks: int) -> int:
    """Actors worth starting: as many as the cluster's CPUs (and GPUs) fit at the per-task request, at most one
    per task and ``max_in_flight``."""
    resources = ray.cluster_resources()
    fits = [int(resources.get("CPU", 1) // config.num_cpus_per_task)] if config.num_cpus_per_task else []
    if config.num_gpus_per_task:
        fits.append(int(resources.get("GPU", 0) // config.num_gpus_per_task))
    limit = min(fits) if fits else tasks
    if config.max_in_flight:
        limit = min(limit, config.max_in_flight)
    return max(1, min(tasks, limit))


def _actor_options(config: RayConfig) -> dict:
    options: dict[str, Any] = dict(num_cpus=config.num_cpus_per_task, num_gpus=config.num_gpus_per_task,
                                   max_restarts=config.max_retries, max_task_retries=config.max_retries)
    if config.memory_per_task_mb:
        options["memory"] = config.memory_per_task_mb << 20
    return options


def map_ray_actors(stage: Stage, tasks: Sequence[ShardTask], config: RayConfig) -> Iterator[ShardDone]:
    """The tasks of a stage with worker state on a pool of ``ShardWorker`` actors; yields in task order. An actor
    gets its next task as soon as it finishes one (results wait here until their turn: shards differ in size, so
    waiting for them in order would leave actors idle); on the first failure every actor is killed (nothing keeps
    writing into the work folder) and the original error raised."""
    stage_ref = ray.put(stage)
    actors = [_RemoteShardWorker.options(**_actor_options(config)).remote(stage_ref)
              for _ in range(actor_count(config, len(tasks)))]
    running: dict = {}  # result ref -> (task index, the actor running it)
    done: dict[int, ShardDone] = {}
    submitted = 0

    def give(actor) -> None:
        nonlocal submitted
        if submitted < len(tasks):
            running[actor.run.remote(tasks[submitted])] = (submitted, actor)
            submitted += 1

    try:
        for actor in actors:
            give(actor)
        for index in range(len(tasks)):
            while index not in done:
                [ref], _ = ray.wait(list(running), num_returns=1)
                finished, actor = running.pop(ref)
                try:
                    done[finished] = ray.get(ref)
                except ray.exceptions.RayError as error:
                    raise unwrap(error, stage, tasks[finished], config) from None
                give(actor)
            yield done.pop(index)
    finally:
        for actor in actors:
            ray.kill(actor)


def map_ray(stage: Stage, tasks: Sequence[ShardTask], config: RayConfig) -> Iterator[ShardDone]:
    """``run_task(stage, t)`` for every task, as Ray tasks (on actors for a stage with worker state); yields in
    task order. On the first failure (in task order) the other tasks are cancelled and awaited, then the
    original error is raised."""
    connect(config)
    if has_worker_state(stage):
        yield from map_ray_actors(stage, tasks, config)
        return
    stage_ref = ray.put(stage)
    window = config.max_in_flight or len(tasks)
    queue = deque(tasks)
    pending: deque[tuple[ShardTask, ray.ObjectRef]] = deque()

    def submit() -> None:
        task = queue.popleft()
        pending.append((task, _remote_run_shard.options(**_options(stage, task, config)).remote(stage_ref, task)))

    try:
        while queue and len(pending) < window:
            submit()
        while pending:
            task, ref = pending.popleft()
            try:
                done = ray.get(ref)
            except ray.exceptions.RayError as error:
                raise unwrap(error, stage, task, config) from None
            if queue:
                submit()
            yield done
    finally:
        _settle([ref for _, ref in pending])


def _settle(refs: list) -> None:
    """Cancel tasks that are still queued or running and wait until none runs: a failed stage must not
    leave tasks writing into its work folder while the next attempt starts."""
    if not refs:
        return
    for ref in refs:
        ray.cancel(ref)
    ray.wait(refs, num_returns=len(refs), timeout=60)


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def unwrap(error: Exception, stage: Stage, task: ShardTask, config: RayConfig) -> BaseException:
    """The exception to raise for a failed Ray task: the task's own exception where there is one (its message
    names the input file and line), with a one-line note instead of Ray's wrapped remote traceback."""
    where = f"stage {stage.name}, shard {task.key}, on a Ray worker"
    if isinstance(error, ray.exceptions.RayTaskError):
        cause = error.cause
        remote = str(error)  # Ray's header line and the remote traceback (what a dual-class instance keeps)
        frames = _FRAME.findall(remote)
        if frames:
            path, line, function = frames[-1]
            where += f" (raised at {path}:{line} in {function})"
        if isinstance(cause, BaseException) and not isinstance(cause, ray.exceptions.RayError):
            cause.add_note(where)
            return cause
        last = remote.strip().splitlines()[-1] if remote.strip() else type(error).__name__
        return RuntimeError(f"{where}: {last}")
    if isinstance(error, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                          ray.exceptions.OutOfMemoryError)):
        return RuntimeError(f"{where}: the worker died {config.max_retries + 1} time(s) "
                            f"(execution.ray.max_retries is {config.max_retries}): {type(error).__name__}: "
                            f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}")
    return RuntimeError(f"{where}: {type(error).__name__}: {error}")
