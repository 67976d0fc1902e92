"""Materialize the whole asset graph in-process, partition by partition, in dependency order.

This is what ``curamix run`` does: the same Definitions the UI shows, executed as a series of runs
recorded in a persistent Dagster instance (``DAGSTER_HOME``, or ``<data_root>/dagster_home``), so
that ``curamix ui`` afterwards shows every run and materialization.

``stale_only`` (``curamix run --stale-only``, for a nightly cron) skips what is up to date by the same rules
the UI's "stale" marker uses (Dagster's staleness: never materialized, a new code version, which includes the
spec settings the asset reads, or an upstream with a new data version), plus, for ``documents``, raw files
whose bytes differ from what staging read (Dagster cannot see those). Each step is decided just before it
runs, so a re-staged domain whose data did not change leaves everything below alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dagster as dg

from assets.dagster_home import dagster_home_for
from assets.definitions import build_definitions
from assets.staleness import is_fresh, resolver
from pipeline.freshness import STAGE as DOCUMENTS
from pipeline.freshness import changed_domains, file_states
from pipeline.spec import load_spec
from pipeline.store import DataRoot


PROGRESS_LOGGER = "curamix_progress"


class _CallbackHandler(logging.Handler):
    def __init__(self, callback: Callable[[str], None]):
        super().__init__(level=logging.INFO)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        # Dagster hands its loggers the user's message in the record's dagster_meta; plain text otherwise.
        meta = getattr(record, "dagster_meta", None) or {}
        message = meta.get("orig_message") or record.getMessage()
        if meta.get("dagster_event") is None and message:
            self.callback(str(message))


def progress_logger(callback: Callable[[str], None]) -> dg.LoggerDefinition:
    """A Dagster logger that hands every INFO-or-above message of the assets (context.log: proxy steps,
    documents scored, ...) to ``callback``: how ``curamix run`` shows progress inside an asset."""

    @dg.logger
    def curamix_progress(init_context):
        log = logging.Logger(PROGRESS_LOGGER, level=logging.INFO)
        log.addHandler(_CallbackHandler(callback))
        return log

    return curamix_progress


@dataclass(frozen=True)
class Step:
    asset_keys: tuple[dg.AssetKey, ...]
    partition_key: str | None


def plan(defs: dg.Definitions, instance: dg.DagsterInstance, selection: Sequence[str] | None = None) -> list[list[Step]]:
    """Group the graph into levels; each level is a set of runs (one per partition key)."""
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.toposorted_asset_keys if graph.get(k).is_materializable]
    if selection:
        wanted = set(dg.AssetSelection.from_coercible(list(selection)).upstream().resolve(graph))
        keys = [k for k in keys if k in wanted]
    levels: list[tuple[object, list[dg.AssetKey]]] = []
    for key in keys:
        partitions = graph.get(key).partitions_def
        parents = graph.get(key).parent_keys
        # Start a new level when partitioning changes or a parent is in the current level with
        # different partitioning (a run cannot mix partition keys).
        if levels and levels[-1][0] == partitions and not (partitions is None and _has_partitioned_parent(graph, parents, levels[-1][1])):
            levels[-1][1].append(key)
        else:
            levels.append((partitions, [key]))
    steps: list[list[Step]] = []
    for partitions, level_keys in levels:
        if partitions is None:
            # One run per global asset: the progress bar then moves asset by asset, and a failure
            # names its asset; files, not run boundaries, carry data between them.
            steps.append([Step((key,), None) for key in level_keys])
        else:
            pks = partitions.get_partition_keys(dynamic_partitions_store=instance)
            steps.append([Step(tuple(level_keys), pk) for pk in pks])
    return steps


def _has_partitioned_parent(graph, parents, level_keys) -> bool:
    return any(p in level_keys and graph.get(p).partitions_def is not None for p in parents)


class StaleFilter:
    """Narrows a step to what is stale, asked just before the step runs: the answer for an asset depends on
    whether the steps before it (in its level too) produced new data. Raw files are hashed once per run,
    before any re-staging, against what staging last read."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, spec_path, data_root: str | None):
        self.graph, self.instance = defs.resolve_asset_graph(), instance
        self.spec_path, self.data_root = spec_path, data_root
        self._raw_changed: set[str] | None = None

    def raw_changed(self) -> set[str]:
        if self._raw_changed is None:
            spec = load_spec(self.spec_path, data_root=self.data_root)
            self._raw_changed = {c.domain for c in changed_domains(spec, DataRoot(spec.data_root), file_states(spec))}
        return self._raw_changed

    def __call__(self, step: Step) -> Step | None:
        """The step from its first stale asset on (an asset below a re-run one in the same run may get new
        data), or None when nothing in it is stale."""
        status_of = resolver(self.instance, self.graph)
        keep: list[dg.AssetKey] = []
        for key in step.asset_keys:
            stale = not is_fresh(status_of, self.graph, key, step.partition_key)
            if not stale and key.to_user_string() == DOCUMENTS and step.partition_key is not None:
                stale = step.partition_key in self.raw_changed()
            if stale or keep:
                keep.append(key)
        return Step(tuple(keep), step.partition_key) if keep else None


def run_all(
    spec_path: str | os.PathLike,
    *,
    data_root: str | None = None,
    selection: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    on_step: Callable[[Step, int, int], None] | None = None,
    log_level: str = "INFO",
    stale_only: bool = False,
    on_message: Callable[[str], None] | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Materialize ``selection`` (default: everything) and what it depends on; raise on failure.
    With ``stale_only``, only what is stale (see the module docstring); the result lists the runs made.
    ``on_message`` receives every message the assets log (their progress), whatever ``log_level`` shows."""
    defs = build_definitions(spec_path, data_root)
    if instance is None:
        instance = dg.DagsterInstance.from_config(str(dagster_home_for(spec_path, data_root)))
    job = defs.resolve_implicit_global_asset_job_def()
    loggers = {"console": {"config": {"log_level": log_level}}}
    if on_message is not None:
        job = job.with_logger_defs({**dg.default_loggers(), PROGRESS_LOGGER: progress_logger(on_message)})
        loggers[PROGRESS_LOGGER] = {}
    results = []
    levels = plan(defs, instance, selection)
    total = sum(len(level) for level in levels)
    stale_filter = StaleFilter(defs, instance, spec_path, data_root) if stale_only else None
    done = 0
    for level_index in range(len(levels)):
        # Dynamic partitions appear while the graph runs: re-plan each level when reached.
        level = plan(defs, instance, selection)[level_index]
        for step in level:
            if stale_filter is not None:
                step = stale_filter(step)
                if step is None:
                    total -= 1
                    continue
            if on_step:
                on_step(step, done, total)
            result = job.execute_in_process(
                asset_selection=list(step.asset_keys),
                partition_key=step.partition_key,
                instance=instance,
                raise_on_error=True,
                run_config={"loggers": loggers},
            )
            failed = [
                e.event_specific_data for e in result.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
            ]
            if failed:
                names = ", ".join(f"{f.asset_key.to_user_string()}:{f.check_name}" for f in failed)
                raise RuntimeError(f"asset checks failed for {step}: {names}")
            results.append(result)
            done += 1
    return results
