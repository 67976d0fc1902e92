"""The `ray` engine: a stage's shard tasks on a Ray cluster whose nodes mount the data root.

Only *where* changes. Each task runs ``executors.run_task`` on a Ray actor (``ShardWorker``), which writes the
shard's folder and done-marker on the shared data root exactly as a local worker does; results come back in plan
order and the stage's global step (``finish``) runs here, on the driver. The stage object is put in Ray's object
store once per stage. The driver keeps its actors from one stage to the next (one per CPU slot it uses, started
when a stage first needs them), as the local engine keeps its pool: what a stage caches per process (a parsed
tokenizer) is loaded once per actor, and a stage with ``load_worker_state`` (a model: embeddings, difficulty
scores) has it loaded once per actor and released when the stage is done. Each actor's process imports every
stage module when it starts (``RUNTIME_ENV``), as the local forkserver does.

Faults: an actor whose process or node dies is restarted and its task re-run, ``max_retries`` times; the earlier
attempt left at most a temporary folder, never a marker, so the retry writes the same bytes. An exception raised
by a task (bad input) is not retried: it is unwrapped from Ray's ``RayTaskError`` and raised here as the original
exception, whose message names the file and line, with a note saying which shard and where; the driver's actors
are stopped first, so nothing keeps writing into the stage's work folder.
"""

from __future__ import annotations

import logging
import re
import tempfile
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
from pipeline.engine.executors import ShardDone, release_worker_state, run_task

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
        stop_actors()
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
    stop_actors()
    if _connected is not None and ray.is_initialized():
        ray.shutdown()
    _connected = None


class ShardWorker:
    """A Ray actor that runs shard tasks of any stage: one per CPU slot the driver uses, kept from one stage to the
    next. A stage with ``load_worker_state`` has it loaded once per actor (``worker_state``) and released when the
    stage is done."""

    def run(self, stage: Stage, task: ShardTask) -> ShardDone:
        return run_task(stage, task)

    def release(self) -> None:
        release_worker_state()


_RemoteShardWorker = ray.remote(ShardWorker)


def actor_count(config: RayConfig, tasks: int) -> int:
    """Actors worth having for ``tasks`` tasks: as many as the cluster's CPUs (and GPUs) fit at the per-task request,
    at most one per task and ``max_in_flight``."""
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


# The driver's actors, kept from one stage to the next as the local engine keeps its pool: a stage's first shard
# then runs on a warm process. (Actors started per stage were extra processes beside Ray's task workers, which
# Ray then stopped as surplus, so the next stage's tasks waited for new workers and their imports: 1.5-2.5 s
# each, several times the sub-second stages' own work.) The actors live as long as this process's connection.
_ACTORS: list = []
_ACTORS_FOR: tuple[RayConfig, str] | None = None  # the settings they were started with, and the Ray job they are of


def _actors(config: RayConfig, wanted: int) -> list:
    """``wanted`` actors started with ``config``'s requests (new ones added as needed; Ray starts them as the cluster
    has room)."""
    global _ACTORS_FOR
    owner = (config, ray.get_runtime_context().get_job_id())
    if _ACTORS_FOR != owner:
        stop_actors()  # other requests, or a new Ray session (whose start ended the old actors)
        _ACTORS_FOR = owner
    while len(_ACTORS) < wanted:
        _ACTORS.append(_RemoteShardWorker.options(**_actor_options(config)).remote())
    return _ACTORS[:wanted]


def start_actors(config: RayConfig) -> None:
    """Connect and start as many actors as the cluster fits, waiting until each is up (``executors.start_engine``)."""
    connect(config)
    ray.get([actor.release.remote() for actor in _actors(config, actor_count(config, 1 << 30))])


def stop_actors() -> None:
    global _ACTORS_FOR
    for actor in _ACTORS:
        try:
            ray.kill(actor)
        except Exception:  # its Ray session is gone already
            pass
    _ACTORS.clear()
    _ACTORS_FOR = None


def map_ray(stage: Stage, tasks: Sequence[ShardTask], config: RayConfig) -> Iterator[ShardDone]:
    """``run_task(stage, t)`` for every task on the driver's ``ShardWorker`` actors; yields in task order. An actor
    gets its next task as soon as it finishes one (results wait here until their turn: shards differ in size, so
    waiting for them in order would leave actors idle). On the first failure every actor is stopped (nothing keeps
    writing into the work folder; the next stage starts new ones) and the original error raised."""
    connect(config)
    stage_ref = ray.put(stage)
    actors = _actors(config, actor_count(config, len(tasks)))
    running: dict = {}  # result ref -> (task index, the actor running it)
    done: dict[int, ShardDone] = {}
    submitted = 0

    def give(actor) -> None:
        nonlocal submitted
        if submitted < len(tasks):
            running[actor.run.remote(stage_ref, tasks[submitted])] = (submitted, actor)
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
    except BaseException:
        stop_actors()
        raise
    if has_worker_state(stage):
        for actor in actors:
            actor.release.remote()  # runs after the actor's last shard: no idle actor keeps a model


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
