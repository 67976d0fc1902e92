"""Operations: the nightly curation schedule and the new-data sensor.

Neither names another stage's assets. Both read the code location's asset graph when they tick, so
they cover whatever stages exist and grow with them:

- the *domain chain* is ``documents`` plus every asset downstream of it that is partitioned by
  domain the same way and has all its parents in the chain (what can run for one domain without
  a global step in between);
- the *graph below documents* is everything downstream of ``documents``, whatever its partitioning.

The schedule requests one run per domain partition, for the chain assets that are stale there (see
``stale_partitions``): that is Dagster's unit of fan-out, and the run launcher places the runs.
Schedules cannot launch backfills, which is why the schedule stops at the chain. The sensor compares
the raw files with what staging last read (``pipeline.freshness``) and, for the affected domains only,
launches one asset backfill of the graph below documents (``sensor.downstream: graph``) or one run
per domain of the chain (``partitions``). In graph mode it also notices per-domain data that the
global assets below have not read (``downstream_behind``: what the nightly schedule leaves) and
backfills the global part; together the two make the nightly refresh end in a new training set.
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    get_input_event_pointer_tag,
)
from dagster._core.execution.asset_backfill import AssetBackfillData
from dagster._core.execution.backfill import BulkActionStatus

from assets.context import BuildContext, StageDefinitions
from assets.resources import CuramixResource
from pipeline.freshness import FileState, changed_domains, file_states
from pipeline.spec import Spec, SpecError
from pipeline.store import DataRoot

DOCUMENTS = dg.AssetKey("documents")
SCHEDULE_NAME = "nightly_curation"
SENSOR_NAME = "raw_files_sensor"
TRIGGER_TAG = "curamix/trigger"


# ---------------------------------------------------------------- the graph, read at tick time


def domain_chain(graph: BaseAssetGraph, anchor: dg.AssetKey = DOCUMENTS) -> list[dg.AssetKey]:
    """``anchor`` and the assets that can run with it for one domain, in dependency order."""
    if not graph.has(anchor):
        return []
    partitions = graph.get(anchor).partitions_def
    chain = [anchor]
    for key in graph_below(graph, anchor)[1:]:
        node = graph.get(key)
        if node.partitions_def != partitions:
            continue
        if all(p in chain and _identity(graph, key, p) for p in node.parent_keys):
            chain.append(key)
    return chain


def _identity(graph: BaseAssetGraph, child: dg.AssetKey, parent: dg.AssetKey) -> bool:
    mapping = graph.get_partition_mapping(child, parent)
    return mapping is None or isinstance(mapping, dg.IdentityPartitionMapping)


@dataclass(frozen=True)
class DomainChainSelection(dg.AssetSelection):
    """The domain chain as an asset selection, resolved against whatever graph it is given (so the
    schedule's job grows with the code location; serialized as the keys it resolves to)."""

    anchor: dg.AssetKey = DOCUMENTS

    def resolve_inner(self, asset_graph: BaseAssetGraph, allow_missing: bool) -> set[dg.AssetKey]:
        return set(domain_chain(asset_graph, self.anchor))

    def to_selection_str(self) -> str:
        return f'key:"{self.anchor.to_user_string()}" and its per-domain chain'


def graph_below(graph: BaseAssetGraph, anchor: dg.AssetKey = DOCUMENTS) -> list[dg.AssetKey]:
    """``anchor`` and every materializable asset downstream of it, in dependency order."""
    if not graph.has(anchor):
        return []
    wanted = set(dg.AssetSelection.assets(anchor).downstream().resolve(graph))
    return [k for k in graph.toposorted_asset_keys if k in wanted and graph.get(k).is_materializable]


# ---------------------------------------------------------------- what is stale, per domain


@dataclass(frozen=True)
class StalePartition:
    """One domain partition to re-run: the chain assets from the first stale one down, and why."""

    domain: str
    assets: tuple[dg.AssetKey, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class _Seen:
    """What the event log holds about one asset partition's latest materialization."""

    storage_id: int
    tags: dict[str, str]


def _latest(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None, *, before: int | None = None
) -> _Seen | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=key, asset_partitions=[partition] if partition is not None else None, before_storage_id=before
        ),
        limit=1,
    ).records
    if not records:
        return None
    materialization = records[0].asset_materialization
    return _Seen(records[0].storage_id, dict(materialization.tags or {}) if materialization else {})


def _data_version_at(instance: dg.DagsterInstance, key: dg.AssetKey, storage_id: int) -> str | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, storage_ids=[storage_id]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    return (materialization.tags or {}).get(DATA_VERSION_TAG) if materialization else None


def _read_newer_data(instance: dg.DagsterInstance, parent: dg.AssetKey, seen: _Seen, parent_now: _Seen | None) -> bool:
    """Did ``parent`` get a different data version since the materialization ``seen`` read it?

    Dagster records which upstream event a materialization read (the input event pointer); a parent
    re-materialized with the same data version (same raw bytes) does not count.
    """
    pointer = seen.tags.get(get_input_event_pointer_tag(parent))
    if parent_now is None or pointer is None or int(pointer) == parent_now.storage_id:
        return False
    return _data_version_at(instance, parent, int(pointer)) != parent_now.tags.get(DATA_VERSION_TAG)


def stale_partitions(
    instance: dg.DagsterInstance,
    graph: BaseAssetGraph,
    spec: Spec,
    states: dict[str, FileState],
    *,
    domains: Sequence[str],
) -> list[StalePartition]:
    """Per domain, which chain assets must re-run.

    An asset partition is stale when it was never materialized, when its code version differs from the
    one it was materialized with, when a parent in the chain has a newer data version than the one it
    read, or (for ``documents``) when the raw files differ from what staging read. Everything below a
    stale asset in the chain re-runs with it. A spec edit shows up as a code version change: each asset's
    code version includes a hash of the spec sections it reads (``BuildContext.code_version``).
    """
    chain = domain_chain(graph)
    if not chain:
        return []
    raw = {c.domain: c.reason for c in changed_domains(spec, DataRoot(spec.data_root), states)}
    result = []
    for domain in domains:
        reasons: dict[dg.AssetKey, str] = {}
        latest = {key: _latest(instance, key, domain) for key in chain}
        for key in chain:
            node, seen = graph.get(key), latest[key]
            if seen is None:
                reasons[key] = "never materialized"
            elif node.code_version is not None and seen.tags.get(CODE_VERSION_TAG) != node.code_version:
                reasons[key] = f"code version {seen.tags.get(CODE_VERSION_TAG)} -> {node.code_version}"
            elif key == DOCUMENTS and domain in raw:
                reasons[key] = raw[domain]
            else:
                newer = [p for p in sorted(node.parent_keys) if _read_newer_data(instance, p, seen, latest.get(p))]
                if newer:
                    reasons[key] = f"{newer[0].to_user_string()} has new data"
        if reasons:
            rerun = _with_chain_descendants(graph, chain, set(reasons))
            result.append(StalePartition(
                domain=domain,
                assets=tuple(rerun),
                reasons=tuple(f"{k.to_user_string()}: {r}" for k, r in reasons.items()),
            ))
    return result


def _with_chain_descendants(graph: BaseAssetGraph, chain: list[dg.AssetKey], stale: set) -> list[dg.AssetKey]:
    selected = set(stale)
    for key in chain:  # chain is in dependency order, so one pass suffices
        if any(p in selected for p in graph.get(key).parent_keys):
            selected.add(key)
    return [k for k in chain if k in selected]


def downstream_behind(
    instance: dg.DagsterInstance, graph: BaseAssetGraph, domains: Sequence[str]
) -> tuple[list[str], int]:
    """Domains whose per-domain output has data that the global assets below the chain have not read.

    The *boundary* assets are the unpartitioned ones with a parent in the chain (``curated_documents``
    today). A domain is behind when a chain asset of it was materialized after a boundary asset with a
    data version other than the one the boundary asset saw, or when a boundary asset was never
    materialized. Returns those domains and the newest chain event seen (so a tick can tell whether
    anything happened since it last asked).
    """
    chain = domain_chain(graph)
    chain_set = set(chain)
    boundary = [
        k for k in graph_below(graph)
        if k not in chain_set and graph.get(k).partitions_def is None and graph.get(k).parent_keys & chain_set
    ]
    behind: set[str] = set()
    newest = 0
    for key in boundary:
        seen = _latest(instance, key, None)
        for parent in sorted(graph.get(key).parent_keys & chain_set):
            for domain in domains:
                now = _latest(instance, parent, domain)
                if now is None:
                    continue
                newest = max(newest, now.storage_id)
                if seen is None:
                    behind.add(domain)
                elif now.storage_id > seen.storage_id:
                    then = _latest(instance, parent, domain, before=seen.storage_id)
                    if then is None or then.tags.get(DATA_VERSION_TAG) != now.tags.get(DATA_VERSION_TAG):
                        behind.add(domain)
    return sorted(behind), newest


# ---------------------------------------------------------------- the sensor's memory


@dataclass
class SensorCursor:
    """File states (so sha256 is recomputed only for touched files) and the fingerprint last requested
    per domain (so a change is requested once, not on every tick until its run finishes)."""

    files: dict[str, FileState] = field(default_factory=dict)
    requested: dict[str, str] = field(default_factory=dict)
    # The newest per-domain materialization for which the global part below was last requested.
    downstream_seen: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {"files": {p: s.to_list() for p, s in sorted(self.files.items())}, "requested": self.requested,
             "downstream_seen": self.downstream_seen},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> "SensorCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            files={p: FileState.from_list(v) for p, v in data.get("files", {}).items()},
            requested=dict(data.get("requested", {})),
            downstream_seen=int(data.get("downstream_seen", 0)),
        )


def _sensor_backfill_in_flight(instance: dg.DagsterInstance) -> str | None:
    for backfill in instance.get_backfills(status=BulkActionStatus.REQUESTED, limit=50):
        if backfill.tags.get(TRIGGER_TAG) == SENSOR_NAME:
            return backfill.backfill_id
    return None


def backfill_request(
    graph: BaseAssetGraph, instance: dg.DagsterInstance, domains: Sequence[str], tags: dict[str, str]
) -> dg.RunRequest:
    """One asset backfill: the chain's ``domains`` partitions and everything below the chain (all its partitions).

    Not Dagster's anchored backfill (``partitionNames`` + a selection, what the UI sends): that one keeps
    only the partitioned assets it can reach through partitioned assets, and would silently leave out a
    partitioned asset below a global one (a partitioned asset below ``token_bins``, say).
    """
    chain = domain_chain(graph)
    now = time.time()
    per_domain = AssetBackfillData.from_asset_partitions(
        asset_graph=graph, partition_names=list(domains), asset_selection=chain,
        dynamic_partitions_store=instance, backfill_start_timestamp=now, all_partitions=False,
    ).target_subset
    below = [k for k in graph_below(graph) if k not in set(chain)]
    if below:
        per_domain |= AssetBackfillData.from_asset_partitions(
            asset_graph=graph, partition_names=None, asset_selection=below,
            dynamic_partitions_store=instance, backfill_start_timestamp=now, all_partitions=True,
        ).target_subset
    return dg.RunRequest.for_asset_graph_subset(per_domain, tags=tags)


def global_backfill_request(graph: BaseAssetGraph, instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.RunRequest:
    """One asset backfill of everything below the domain chain (all partitions), the chain itself untouched."""
    chain = set(domain_chain(graph))
    data = AssetBackfillData.from_asset_partitions(
        asset_graph=graph,
        partition_names=None,
        asset_selection=[k for k in graph_below(graph) if k not in chain],
        dynamic_partitions_store=instance,
        backfill_start_timestamp=time.time(),
        all_partitions=True,
    )
    return dg.RunRequest.for_asset_graph_subset(data.target_subset, tags=tags)


# ---------------------------------------------------------------- definitions


def build_stage(ctx: BuildContext) -> StageDefinitions:
    ops = ctx.spec.operations
    partition_keys = set(ctx.domain_partitions.get_partition_keys())

    def known(domains):
        # The partitions are fixed when the code location loads; a domain added to the spec since then
        # appears after a reload of the code location.
        return [d for d in domains if d in partition_keys]

    @dg.schedule(
        name=SCHEDULE_NAME,
        cron_schedule=ops.schedule.cron,
        execution_timezone=ops.schedule.timezone,
        target=DomainChainSelection(),
        default_status=dg.DefaultScheduleStatus.RUNNING if ops.schedule.running else dg.DefaultScheduleStatus.STOPPED,
        description="Nightly curation: one run per domain partition of the per-domain assets "
        "(documents and what follows it per domain), only where something is stale "
        "(operations.schedule in the spec: cron, timezone, partitions).",
    )
    def nightly_curation(context: dg.ScheduleEvaluationContext, curamix: CuramixResource):
        try:
            spec = curamix.load_spec()
        except SpecError as exc:
            return dg.SkipReason(f"the spec does not load: {exc}")
        graph = context.repository_def.asset_graph
        chain = domain_chain(graph)
        if not chain:
            return dg.SkipReason("no documents asset in this code location")
        domains = known(spec.domains)
        if spec.operations.schedule.partitions == "all":
            todo = [StalePartition(d, tuple(chain), ("every night",)) for d in domains]
        else:
            todo = stale_partitions(context.instance, graph, spec, file_states(spec), domains=domains)
        if not todo:
            return dg.SkipReason(f"all {len(domains)} domain partitions are up to date")
        requests = []
        for item in todo:
            context.log.info(f"{item.domain}: {'; '.join(item.reasons)}")
            requests.append(dg.RunRequest(
                run_key=item.domain,  # unique within the tick; Dagster scopes schedule run keys per tick
                partition_key=item.domain,
                asset_selection=list(item.assets),
                tags={TRIGGER_TAG: SCHEDULE_NAME},
            ))
        return requests

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=ops.sensor.interval_seconds,
        asset_selection=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING if ops.sensor.running else dg.DefaultSensorStatus.STOPPED,
        description="New or changed raw files of a source: re-stage only the affected domain partitions and "
        "what depends on them; staged partitions that the global assets below have not read yet (e.g. from "
        "the nightly schedule): refresh the global part (operations.sensor in the spec).",
    )
    def raw_files_sensor(context: dg.SensorEvaluationContext, curamix: CuramixResource):
        try:
            spec = curamix.load_spec()  # re-expands the sources' globs, so new files are seen
        except SpecError as exc:
            return dg.SkipReason(f"the spec does not load: {exc}")
        cursor = SensorCursor.from_json(context.cursor)
        states = file_states(spec, cursor.files)
        changes = [c for c in changed_domains(spec, DataRoot(spec.data_root), states) if c.domain in partition_keys]
        fresh = [c for c in changes if cursor.requested.get(c.domain) != c.fingerprint]
        graph = context.repository_def.asset_graph
        mode = spec.operations.sensor.downstream
        tags = {TRIGGER_TAG: SENSOR_NAME}
        requested = {d: fp for d, fp in cursor.requested.items() if d in spec.domains}
        behind, newest = ([], cursor.downstream_seen)
        if mode == "graph" and not fresh:
            # Staged data the global part has not read yet (from the nightly schedule, the UI, ...).
            behind, newest = downstream_behind(context.instance, graph, [d for d in spec.domains if d in partition_keys])
            if newest == cursor.downstream_seen:
                behind = []  # already requested for exactly these materializations
        if (fresh or behind) and mode == "graph" and (busy := _sensor_backfill_in_flight(context.instance)):
            # One backfill at a time: the next tick after it finishes requests what changed meanwhile.
            context.update_cursor(SensorCursor(states, requested, cursor.downstream_seen).to_json())
            return dg.SkipReason(f"waiting for backfill {busy}")
        requested.update({c.domain: c.fingerprint for c in fresh})
        context.update_cursor(SensorCursor(states, requested, newest if behind else cursor.downstream_seen).to_json())
        if fresh:
            for c in fresh:
                context.log.info(f"{c.domain}: {c.reason} (fingerprint {c.fingerprint})")
            if mode == "graph":
                return [backfill_request(graph, context.instance, [c.domain for c in fresh], tags)]
            chain = domain_chain(graph)
            return [
                dg.RunRequest(run_key=f"{c.domain}:{c.fingerprint}", partition_key=c.domain, asset_selection=chain, tags=tags)
                for c in fresh
            ]
        if behind:
            context.log.info(f"staged data of {', '.join(behind)} not yet read below the per-domain assets")
            return [global_backfill_request(graph, context.instance, tags)]
        return dg.SkipReason("no raw file changed since it was staged or requested, and everything below has read the staged data")

    return StageDefinitions(schedules=[nightly_curation], sensors=[raw_files_sensor])


__all__ = [
    "SCHEDULE_NAME",
    "SENSOR_NAME",
    "SensorCursor",
    "StalePartition",
    "backfill_request",
    "downstream_behind",
    "global_backfill_request",
    "build_stage",
    "domain_chain",
    "graph_below",
    "stale_partitions",
]
