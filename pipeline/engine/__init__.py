"""The stage contract and the engines that run it (no Dagster here).

A stage = ``plan()`` -> independent ``ShardTask`` s; ``run_shard(task, out)`` -> files in ``out``, a small
result; ``finish(results)`` -> the stage's output, once. ``run_stage(stage, execution=spec.execution)``
runs the tasks inline or on a pool of worker processes, skipping shards finished by an earlier, crashed run.
"""

from pipeline.engine.contract import ShardTask, Stage, shard_seed
from pipeline.engine.executors import finished, marker_path, run_stage, shard_dir, start_engine

__all__ = ["ShardTask", "Stage", "shard_seed", "run_stage", "start_engine", "finished", "marker_path", "shard_dir"]
