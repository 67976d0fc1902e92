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
launches one asset backfill of the chain (``sensor.downstream: graph``) or one run per domain of the
chain (``partitions``). In graph mode its later ticks walk the global part below the chain one *stale
frontier* at a time (``assets.staleness.stale_frontier``: the assets Dagster marks stale whose parents
are all fresh), each as one backfill. A stage whose output did not change keeps its data version (each
stage's data version is a hash of what it wrote), so nothing below it becomes stale and nothing below it
re-runs: a new raw file that curation drops as a near duplicate costs one staging and one curation run.
Per-domain data from the nightly schedule is picked up the same way; together they make the nightly
refresh end in a new training set when, and only when, the data changed.

The sensor keeps the raw files' fingerprints (size, mtime, sha256 per file) in
``<data_root>/.curamix/sensor/file_states.json``; its cursor holds only that file's digest, the
fingerprint last requested per domain and the last global request (so the UI's sensor page stays short).
"""

import hashlib
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
from assets.staleness import stale_frontier
from pipeline.freshness import FileState, changed_domains, file_states
from pipeline.layout import Layout
from pipeline.spec import Spec, SpecError
from pipeline.store import DataRoot, atomic_file

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


def frontier_signature(instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey], graph: BaseAssetGraph) -> str:
    """The frontier's keys and the newest materialization of any of their parents: a request for exactly this
    is made once (a failed backfill is not retried on every tick; new upstream data makes a new signature)."""
    parents = sorted({p for k in keys for p in graph.get(k).parent_keys})
    newest = max((seen.storage_id for p in parents if (seen := _latest(instance, p, None))), default=0)
    return hashlib.sha256(json.dumps([[k.to_user_string() for k in keys], newest]).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the sensor's memory

FILE_STATES = Layout.at("").sensor_file_states  # relative to a data root



def load_file_states(root: DataRoot, digest: str) -> dict[str, FileState]:
    """The fingerprints the sensor saved, if they are the ones its cursor names (else none: re-hash all)."""
    path = root.layout.sensor_file_states
    try:
        text = path.read_text()
    except OSError:
        return {}
    if _digest(text) != digest:
        return {}
    return {p: FileState.from_list(v) for p, v in json.loads(text).items()}


def save_file_states(root: DataRoot, states: dict[str, FileState]) -> str:
    """Write the fingerprints (atomically, only when they changed); returns their digest for the cursor."""
    text = json.dumps({p: s.to_list() for p, s in sorted(states.items())}, separators=(",", ":"))
    path = root.layout.sensor_file_states
    if not path.exists() or path.read_text() != text:
        with atomic_file(path) as tmp:
            tmp.write_text(text)
    return _digest(text)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class SensorCursor:
    """Small on purpose (Dagster prints it on the sensor's page): the digest of the saved file states (so
    sha256 is recomputed only for touched files), the fingerprint last requested per domain (so a change is
    requested once, not on every tick until its run finishes) and the last global frontier requested."""

    files: str = ""
    requested: dict[str, str] = field(default_factory=dict)
    frontier: str = ""

    def to_json(self) -> str:
        return json.dumps({"files": self.files, "requested": self.requested, "frontier": self.frontier},
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "SensorCursor":
        if not text:
            return cls()
        data = json.loads(text)
        files = data.get("files", "")
        return cls(files=files if isinstance(files, str) else "",  # an older cursor held the states inline
                   requested=dict(data.get("requested", {})), frontier=str(data.get("frontier", "")))


def _sensor_backfill_in_flight(instance: dg.DagsterInstance) -> str | None:
    for backfill in instance.get_backfills(status=BulkActionStatus.REQUESTED, limit=50):
        if backfill.tags.get(TRIGGER_TAG) == SENSOR_NAME:
            return backfill.backfill_id
    return None


def backfill_request(
    graph: BaseAssetGraph, instance: dg.DagsterInstance, domains: Sequence[str], tags: dict[str, str]
) -> dg.RunRequest:
    """One asset backfill of the chain's ``domains`` partitions; what lies below follows on later ticks, one
    stale frontier at a time (so that an unchanged output stops the refresh)."""
    data = AssetBackfillData.from_asset_partitions(
        asset_graph=graph, partition_names=list(domains), asset_selection=domain_chain(graph),
        dynamic_partitions_store=instance, backfill_start_timestamp=time.time(), all_partitions=False,
    )
    return dg.RunRequest.for_asset_graph_subset(data.target_subset, tags=tags)


def frontier_backfill_request(
    graph: BaseAssetGraph, instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey], tags: dict[str, str]
) -> dg.RunRequest:
    """One asset backfill of ``keys`` (every partition of each).

    Not Dagster's anchored backfill (``partitionNames`` + a selection, what the UI sends): that one keeps
    only the partitioned assets it can reach through partitioned assets, and would silently leave out a
    partitioned asset below a global one (a partitioned asset below ``token_bins``, say).
    """
    data = AssetBackfillData.from_asset_partitions(
        asset_graph=graph, partition_names=None, asset_selection=list(keys), dynamic_partitions_store=instance,
        backfill_start_timestamp=time.time(), all_partitions=True,
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
        description="New or changed raw files of a source: re-stage only the affected domain partitions; then, "
        "tick by tick, backfill the stale assets below whose parents are fresh, so a stage whose output did not "
        "change stops the refresh (operations.sensor in the spec).",
    )
    def raw_files_sensor(context: dg.SensorEvaluationContext, curamix: CuramixResource):
        try:
            spec = curamix.load_spec()  # re-expands the sources' globs, so new files are seen
        except SpecError as exc:
            return dg.SkipReason(f"the spec does not load: {exc}")
        cursor = SensorCursor.from_json(context.cursor)
        root = DataRoot(spec.data_root)
        states = file_states(spec, load_file_states(root, cursor.files))
        files_digest = save_file_states(root, states)
        changes = [c for c in changed_domains(spec, root, states) if c.domain in partition_keys]
        fresh = [c for c in changes if cursor.requested.get(c.domain) != c.fingerprint]
        graph = context.repository_def.asset_graph
        mode = spec.operations.sensor.downstream
        tags = {TRIGGER_TAG: SENSOR_NAME}
        requested = {d: fp for d, fp in cursor.requested.items() if d in spec.domains}

        def remember(frontier: str = cursor.frontier) -> None:
            context.update_cursor(SensorCursor(files_digest, requested, frontier).to_json())

        if mode == "graph" and (busy := _sensor_backfill_in_flight(context.instance)):
            # One backfill at a time: the next tick after it ends requests what changed meanwhile and what
            # its runs made stale below.
            remember()
            waiting = f"; raw files of {', '.join(c.domain for c in fresh)} changed meanwhile" if fresh else ""
            return dg.SkipReason(f"waiting for backfill {busy} to end, then looking at what it made stale below{waiting}")
        requested.update({c.domain: c.fingerprint for c in fresh})
        if fresh:
            remember()
            for c in fresh:
                context.log.info(f"{c.domain}: {c.reason} (fingerprint {c.fingerprint})")
            if mode == "graph":
                return [backfill_request(graph, context.instance, [c.domain for c in fresh], tags)]
            chain = domain_chain(graph)
            return [
                dg.RunRequest(run_key=f"{c.domain}:{c.fingerprint}", partition_key=c.domain, asset_selection=chain, tags=tags)
                for c in fresh
            ]
        if mode == "graph":
            chain = set(domain_chain(graph))
            frontier = stale_frontier(context.instance, graph, [k for k in graph_below(graph) if k not in chain])
            if frontier:
                names = ", ".join(k.to_user_string() for k in frontier)
                signature = frontier_signature(context.instance, frontier, graph)
                if signature == cursor.frontier:
                    remember()
                    return dg.SkipReason(f"{names} still stale after the backfill this sensor requested for them: "
                                         "see that backfill's runs (nothing upstream changed since)")
                remember(signature)
                context.log.info(f"stale below the per-domain assets, with fresh parents: {names}")
                return [frontier_backfill_request(graph, context.instance, frontier, tags)]
        remember()
        below = "; every asset below documents is fresh" if mode == "graph" else ""
        return dg.SkipReason(f"no raw file changed since it was staged or requested{below}")

    return StageDefinitions(schedules=[nightly_curation], sensors=[raw_files_sensor])


__all__ = [
    "SCHEDULE_NAME",
    "SENSOR_NAME",
    "SensorCursor",
    "StalePartition",
    "backfill_request",
    "frontier_backfill_request",
    "frontier_signature",
    "load_file_states",
    "save_file_states",
    "build_stage",
    "domain_chain",
    "graph_below",
    "stale_partitions",
]
