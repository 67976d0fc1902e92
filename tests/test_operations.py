"""The nightly schedule and the raw-files sensor: which runs they request, and only those.

The code location here is staging + operations + two stand-in assets (a per-domain one and a global
one), so that these tests exercise the graph logic without depending on the other stages' state;
``test_full_code_location_*`` checks the same functions on the real code location.
"""

import json
import os
import shutil
import time

import dagster as dg
import pytest

import assets.operations as ops
import assets.staging as staging
import pipeline.freshness as freshness
from assets.context import BuildContext
from assets.resources import CuramixResource
from pipeline.spec import load_spec

DOMAINS = ["alpha", "beta", "gamma"]


def write_jsonl(path, texts):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def make_spec(tmp_path, *, sensor_downstream="graph", schedule_partitions="stale"):
    raw = tmp_path / "raw"
    for d in DOMAINS:
        for part in range(2):
            write_jsonl(raw / d / f"part{part}.jsonl",
                        [f"Document {i} of {d} part {part}: some words about {d}." for i in range(5)])
    sources = "\n".join(
        f"  - {{name: {d}_src, path: 'raw/{d}/*.jsonl', domain: {d}}}" for d in DOMAINS
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: ops-test\nseed: 1\ndata_root: data\nsources:\n{sources}\n"
        f"operations:\n  schedule: {{cron: '30 2 * * *', timezone: Europe/Paris, partitions: {schedule_partitions}}}\n"
        f"  sensor: {{interval_seconds: 30, downstream: {sensor_downstream}}}\n"
    )
    return spec


def build_defs(spec_path, data_root, *, curated_version="v1"):
    """staging + operations + stand-ins: ``toy_curated`` per domain, ``toy_global`` over all domains,
    ``toy_sweeps`` partitioned by sweep below it."""
    spec = CuramixResource(spec_path=str(spec_path), data_root=str(data_root)).load_spec()
    ctx = BuildContext(spec=spec, domain_partitions=dg.StaticPartitionsDefinition(spec.domains))

    @dg.asset(name="toy_curated", deps=["documents"], partitions_def=ctx.domain_partitions, code_version=curated_version)
    def toy_curated(context: dg.AssetExecutionContext):
        return dg.MaterializeResult(metadata={"domain": context.partition_key})

    @dg.asset(name="toy_global", deps=["toy_curated"])
    def toy_global():
        return dg.MaterializeResult()

    # Partitioned differently, below a global asset (like proxy_runs' sweeps below token_bins).
    @dg.asset(name="toy_sweeps", deps=["toy_global"], partitions_def=dg.StaticPartitionsDefinition(["s1", "s2"]))
    def toy_sweeps():
        return dg.MaterializeResult()

    stage = staging.build_stage(ctx)
    operations = ops.build_stage(ctx)
    return dg.Definitions(
        assets=[*stage.assets, toy_curated, toy_global, toy_sweeps],
        schedules=operations.schedules,
        sensors=operations.sensors,
        resources={"curamix": CuramixResource(spec_path=str(spec_path), data_root=str(data_root))},
    )


def materialize(defs, instance, domains, keys=("documents", "toy_curated")):
    from dagster._core.storage.defs_state.base import _current_storage

    # execute_in_process leaves a context variable pointing at the defs-state storage of an instance
    # it made and dropped; restore ours so that Definitions built afterwards in this test still load.
    current = _current_storage.get()
    job = defs.resolve_implicit_global_asset_job_def()
    try:
        for d in domains:
            job.execute_in_process(
                asset_selection=[dg.AssetKey(k) for k in keys], partition_key=d, instance=instance, raise_on_error=True
            )
    finally:
        _current_storage.set(current)


def materialize_all(defs, instance, domains=DOMAINS):
    """The per-domain chain for ``domains``, then the global asset below it and the sweeps below that."""
    materialize(defs, instance, domains)
    materialize(defs, instance, [None], keys=("toy_global",))
    materialize(defs, instance, ["s1", "s2"], keys=("toy_sweeps",))


def make_instance(tmp_path):
    (tmp_path / "home").mkdir(exist_ok=True)
    return dg.instance_for_test(temp_dir=str(tmp_path / "home"))


def resource(spec_path, data_root):
    return {"curamix": CuramixResource(spec_path=str(spec_path), data_root=str(data_root))}


def schedule_tick(defs, instance, spec_path, data_root):
    schedule = defs.resolve_schedule_def(ops.SCHEDULE_NAME)
    with dg.build_schedule_context(
        instance=instance, repository_def=defs.get_repository_def(), resources=resource(spec_path, data_root)
    ) as context:
        return schedule.evaluate_tick(context)


def sensor_tick(defs, instance, spec_path, data_root, cursor=None):
    sensor = defs.resolve_sensor_def(ops.SENSOR_NAME)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, repository_def=defs.get_repository_def(),
        resources=resource(spec_path, data_root),
    ) as context:
        return sensor.evaluate_tick(context)


def requested(result):
    return {r.partition_key: [k.to_user_string() for k in r.asset_selection] for r in result.run_requests or []}


def backfill_partitions(request):
    """{asset: sorted partition keys or None (unpartitioned)} of a backfill run request."""
    subset = request.asset_graph_subset
    out = {}
    for key in subset.asset_keys:
        parts = subset.partitions_subsets_by_asset_key.get(key)
        out[key.to_user_string()] = sorted(parts.get_partition_keys()) if parts is not None else None
    return out


@pytest.fixture(autouse=True)
def fresh_defs_state_storage():
    """Start each test without a defs-state storage left behind by an earlier test's instance."""
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
    yield
    _current_storage.set(None)


@pytest.fixture(scope="module")
def staged_base(tmp_path_factory):
    """Once per module: every domain's chain and the global asset materialized (copied by ``staged``)."""
    from dagster._core.storage.defs_state.base import _current_storage

    base = tmp_path_factory.mktemp("staged")
    spec = make_spec(base)
    _current_storage.set(None)
    with make_instance(base) as instance:
        materialize_all(build_defs(spec, base / "data"), instance)
    _current_storage.set(None)
    return base


@pytest.fixture
def staged(staged_base, tmp_path):
    """A private copy of ``staged_base`` (raw files with their mtimes, data root, instance storage)."""
    work = tmp_path / "staged"
    shutil.copytree(staged_base, work, copy_function=shutil.copy2, ignore=shutil.ignore_patterns("dagster.yaml"))
    with make_instance(work) as instance:
        yield work / "spec.yaml", work / "data", instance


@pytest.fixture
def setup(tmp_path):
    spec = make_spec(tmp_path)
    root = tmp_path / "data"
    with make_instance(tmp_path) as instance:
        yield spec, root, instance


def test_spec_section_is_read_and_validated(tmp_path):
    spec = load_spec(make_spec(tmp_path))
    assert spec.operations.schedule.cron == "30 2 * * *"
    assert spec.operations.schedule.timezone == "Europe/Paris"
    assert spec.operations.sensor.interval_seconds == 30
    bad = tmp_path / "bad.yaml"
    bad.write_text(make_spec(tmp_path).read_text().replace("'30 2 * * *'", "'30 2 * *'"))
    with pytest.raises(ValueError, match="operations.schedule: cron"):
        load_spec(bad)
    bad.write_text(make_spec(tmp_path).read_text().replace("Europe/Paris", "Mars/Olympus"))
    with pytest.raises(ValueError, match="timezone"):
        load_spec(bad)


def test_schedule_and_sensor_ship_stopped_with_the_spec_cron(setup):
    spec, root, _ = setup
    defs = build_defs(spec, root)
    schedule = defs.resolve_schedule_def(ops.SCHEDULE_NAME)
    sensor = defs.resolve_sensor_def(ops.SENSOR_NAME)
    assert schedule.cron_schedule == "30 2 * * *"
    assert schedule.execution_timezone == "Europe/Paris"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.minimum_interval_seconds == 30


def test_graph_helpers_follow_the_partitioning(setup):
    spec, root, _ = setup
    graph = build_defs(spec, root).resolve_asset_graph()
    assert [k.to_user_string() for k in ops.domain_chain(graph)] == ["documents", "toy_curated"]
    assert [k.to_user_string() for k in ops.graph_below(graph)] == ["documents", "toy_curated", "toy_global", "toy_sweeps"]


def test_schedule_requests_every_partition_at_first(setup):
    spec, root, instance = setup
    first = schedule_tick(build_defs(spec, root), instance, spec, root)
    # Nothing materialized: one run per domain partition, the whole per-domain chain.
    assert requested(first) == {d: ["documents", "toy_curated"] for d in DOMAINS}
    assert all(r.tags[ops.TRIGGER_TAG] == ops.SCHEDULE_NAME for r in first.run_requests)


def test_schedule_requests_stale_partitions_only(staged):
    spec, root, instance = staged
    defs = build_defs(spec, root)
    idle = schedule_tick(defs, instance, spec, root)
    assert not idle.run_requests and "up to date" in idle.skip_message

    # A touched file with the same bytes is no change; new bytes in beta are.
    a_file = spec.parent / "raw" / "alpha" / "part0.jsonl"
    os.utime(a_file, ns=(time.time_ns(), time.time_ns() + 10**9))
    with open(spec.parent / "raw" / "beta" / "part1.jsonl", "a") as handle:
        handle.write(json.dumps({"text": "A new beta document arrived tonight."}) + "\n")
    assert requested(schedule_tick(defs, instance, spec, root)) == {"beta": ["documents", "toy_curated"]}


def test_schedule_reruns_only_what_a_code_version_change_touches(staged):
    spec, root, instance = staged
    # New code for the per-domain stage: documents is not recomputed, toy_curated is (every domain).
    defs_v2 = build_defs(spec, root, curated_version="v2")
    assert requested(schedule_tick(defs_v2, instance, spec, root)) == {d: ["toy_curated"] for d in DOMAINS}


def test_schedule_reruns_what_a_spec_edit_touches(staged):
    spec, root, instance = staged
    # The operations section is read by no asset: nothing to re-run.
    spec.write_text(spec.read_text().replace("interval_seconds: 30", "interval_seconds: 60"))
    assert requested(schedule_tick(build_defs(spec, root), instance, spec, root)) == {}
    # A staging setting is part of `documents`' version: every domain re-stages, and what follows it.
    spec.write_text(spec.read_text() + "staging: {compression_level: 3}\n")
    tick = schedule_tick(build_defs(spec, root), instance, spec, root)
    assert requested(tick) == {d: ["documents", "toy_curated"] for d in DOMAINS}


def test_schedule_sees_upstream_data_newer_than_what_a_partition_read(staged):
    spec, root, instance = staged
    defs = build_defs(spec, root)
    write_jsonl(spec.parent / "raw" / "gamma" / "part0.jsonl", ["Entirely new gamma text."])
    materialize(defs, instance, ["gamma"], keys=("documents",))  # someone re-staged gamma alone
    assert requested(schedule_tick(defs, instance, spec, root)) == {"gamma": ["toy_curated"]}


def test_schedule_all_mode_requests_every_partition(staged):
    spec, root, instance = staged
    spec.write_text(spec.read_text().replace("partitions: stale", "partitions: all"))  # read at every tick
    assert requested(schedule_tick(build_defs(spec, root), instance, spec, root)) == {
        d: ["documents", "toy_curated"] for d in DOMAINS
    }


def test_sensor_backfills_only_the_partitions_a_new_file_touches(staged):
    spec, root, instance = staged
    defs = build_defs(spec, root)

    quiet = sensor_tick(defs, instance, spec, root)
    assert not quiet.run_requests and "no raw file changed" in quiet.skip_message
    assert "every asset below documents is fresh" in quiet.skip_message
    cursor = quiet.cursor
    # The fingerprints live in a file under the data root; the cursor (printed on the sensor's page) is small
    # whatever the number of raw files.
    assert len(json.loads((root / ops.FILE_STATES).read_text())) == 6
    assert len(cursor) < 200 and "sha" not in cursor

    write_jsonl(spec.parent / "raw" / "beta" / "part2.jsonl", ["A third beta file appears."])
    tick = sensor_tick(defs, instance, spec, root, cursor)
    (request,) = tick.run_requests
    assert request.requires_backfill_daemon()
    assert request.tags[ops.TRIGGER_TAG] == ops.SENSOR_NAME
    # The chain of the touched domain only; the global part follows once it ran, if its data changed.
    assert backfill_partitions(request) == {"documents": ["beta"], "toy_curated": ["beta"]}

    # Requested once: the next tick does not ask again while the change is being processed.
    again = sensor_tick(defs, instance, spec, root, tick.cursor)
    assert not again.run_requests

    # A file removed from alpha is a change of alpha (and only alpha).
    (spec.parent / "raw" / "alpha" / "part1.jsonl").unlink()
    removed = sensor_tick(defs, instance, spec, root, again.cursor)
    assert [backfill_partitions(r)["documents"] for r in removed.run_requests] == [["alpha"]]


def test_sensor_partition_mode_requests_one_run_per_affected_domain(tmp_path):
    spec = make_spec(tmp_path, sensor_downstream="partitions")
    root = tmp_path / "data"
    with make_instance(tmp_path) as instance:
        defs = build_defs(spec, root)
        materialize(defs, instance, ["alpha", "beta"])  # gamma never staged
        tick = sensor_tick(defs, instance, spec, root)
        assert requested(tick) == {"gamma": ["documents", "toy_curated"]}
        (request,) = tick.run_requests
        assert request.run_key.startswith("gamma:")
        with open(spec.parent / "raw" / "alpha" / "part0.jsonl", "a") as handle:
            handle.write(json.dumps({"text": "More alpha."}) + "\n")
        assert requested(sensor_tick(defs, instance, spec, root, tick.cursor)) == {
            "alpha": ["documents", "toy_curated"]
        }


def test_sensor_refreshes_the_global_part_when_staged_data_is_newer(setup):
    spec, root, instance = setup
    defs = build_defs(spec, root)
    materialize(defs, instance, DOMAINS)  # the per-domain chain only, as the nightly schedule leaves it

    # One stale frontier at a time: toy_global first (its parents are fresh), not the chain, not toy_sweeps.
    first = sensor_tick(defs, instance, spec, root)
    (request,) = first.run_requests
    assert backfill_partitions(request) == {"toy_global": None}
    again = sensor_tick(defs, instance, spec, root, first.cursor)
    assert not again.run_requests and "still stale after the backfill" in again.skip_message  # asked once

    materialize(defs, instance, [None], keys=("toy_global",))
    second = sensor_tick(defs, instance, spec, root, first.cursor)
    assert [backfill_partitions(r) for r in second.run_requests] == [{"toy_sweeps": ["s1", "s2"]}]
    for sweep in ("s1", "s2"):
        materialize(defs, instance, [sweep], keys=("toy_sweeps",))
    quiet = sensor_tick(defs, instance, spec, root, second.cursor)
    assert not quiet.run_requests

    # Re-staging alpha with the same bytes changes no data version: nothing to refresh.
    materialize(defs, instance, ["alpha"])
    assert not sensor_tick(defs, instance, spec, root, quiet.cursor).run_requests

    # New gamma data staged by the schedule: the global part is refreshed, the chain is not re-run.
    write_jsonl(spec.parent / "raw" / "gamma" / "part0.jsonl", ["Fresh gamma text for tonight."])
    materialize(defs, instance, ["gamma"])
    (refresh,) = sensor_tick(defs, instance, spec, root, quiet.cursor).run_requests
    assert backfill_partitions(refresh) == {"toy_global": None}


def test_sensor_rehashes_only_touched_files(staged, monkeypatch):
    spec, root, instance = staged
    defs = build_defs(spec, root)
    cursor = sensor_tick(defs, instance, spec, root).cursor
    hashed = []
    real = freshness._sha256
    monkeypatch.setattr(freshness, "_sha256", lambda p: hashed.append(p.name) or real(p))
    sensor_tick(defs, instance, spec, root, cursor)
    assert hashed == []  # stat unchanged: the cursor's sha256 is reused
    target = spec.parent / "raw" / "gamma" / "part0.jsonl"
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    result = sensor_tick(defs, instance, spec, root, cursor)
    assert hashed == ["part0.jsonl"]
    assert not result.run_requests  # same bytes: no change


def test_sensor_waits_for_its_own_backfill(staged):
    from dagster._core.execution.backfill import PartitionBackfill

    spec, root, instance = staged
    defs = build_defs(spec, root)
    write_jsonl(spec.parent / "raw" / "alpha" / "part9.jsonl", ["Late alpha."])
    tick = sensor_tick(defs, instance, spec, root)
    (request,) = tick.run_requests
    instance.add_backfill(PartitionBackfill.from_asset_graph_subset(
        backfill_id="inflight", backfill_timestamp=time.time(), tags=dict(request.tags),
        dynamic_partitions_store=instance, asset_graph_subset=request.asset_graph_subset,
        title=None, description=None, run_config=None,
    ))
    waiting = sensor_tick(defs, instance, spec, root)
    assert not waiting.run_requests and "waiting for backfill inflight" in waiting.skip_message
    # With its change already requested, the tick still says what is true: its backfill is running.
    during = sensor_tick(defs, instance, spec, root, tick.cursor)
    assert not during.run_requests and "waiting for backfill inflight" in during.skip_message
    assert "fresh" not in during.skip_message and "has read" not in during.skip_message


def test_sensor_skips_with_a_reason_when_the_spec_breaks(setup):
    spec, root, instance = setup
    defs = build_defs(spec, root)
    for f in (spec.parent / "raw" / "beta").glob("*.jsonl"):
        f.unlink()
    result = sensor_tick(defs, instance, spec, root)
    assert not result.run_requests and "no file matches" in result.skip_message


def test_full_code_location_schedule_requests_the_domain_chain(data_root):
    """The real code location: the schedule's runs cover exactly its per-domain assets."""
    from assets.definitions import DEFAULT_SPEC, build_definitions

    defs = build_definitions(DEFAULT_SPEC, str(data_root))
    graph = defs.resolve_asset_graph()
    chain = [k.to_user_string() for k in ops.domain_chain(graph)]
    assert chain[0] == "documents"
    spec = load_spec(DEFAULT_SPEC)
    with dg.instance_for_test() as instance:
        result = schedule_tick(defs, instance, DEFAULT_SPEC, data_root)
    assert requested(result) == {d: chain for d in spec.domains}


STAGE_GROUPS = {"staging", "curation", "pruning", "proxies", "mixing", "output"}


def test_full_code_location_is_described_grouped_and_checked(data_root):
    """What the UI shows for the whole graph: every asset in a stage group with a description and kinds,
    every stage with at least one blocking asset check, one schedule and one sensor, both stopped."""
    from assets.definitions import DEFAULT_SPEC, build_definitions

    defs = build_definitions(DEFAULT_SPEC, str(data_root))
    graph = defs.resolve_asset_graph()
    blocking_by_group: dict[str, int] = {}
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        name = key.to_user_string()
        assert node.group_name in STAGE_GROUPS, (name, node.group_name)
        assert node.description and len(node.description) > 20, name
        assert node.kinds, name
        for check_key in node.check_keys:
            if graph.get(check_key).blocking:
                blocking_by_group[node.group_name] = blocking_by_group.get(node.group_name, 0) + 1
    present = {graph.get(k).group_name for k in graph.materializable_asset_keys}
    assert present <= set(blocking_by_group), f"stages without a blocking check: {sorted(present - set(blocking_by_group))}"
    assert [s.name for s in defs.schedules] == [ops.SCHEDULE_NAME]
    assert ops.SENSOR_NAME in [s.name for s in defs.sensors]


def test_full_code_location_versions_follow_the_spec_sections_each_asset_reads(tmp_path, data_root):
    """Editing one spec section changes the code version (so the UI's stale marker) of exactly the assets
    that read it; everything below follows through data versions, not code versions."""
    import yaml

    from assets.definitions import DEFAULT_SPEC, build_definitions

    body = yaml.safe_load(DEFAULT_SPEC.read_text())
    for source in body["sources"]:
        source["path"] = str(DEFAULT_SPEC.parent / source["path"])

    def versions(edit):
        changed = json.loads(json.dumps(body))
        edit(changed)
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(changed))
        graph = build_definitions(path, str(data_root)).resolve_asset_graph()
        return {k.to_user_string(): graph.get(k).code_version for k in graph.materializable_asset_keys}

    base = versions(lambda b: None)
    assert base == versions(lambda b: b.setdefault("operations", {}).update(schedule={"cron": "0 4 * * *"}))

    def differs(edit):
        new = versions(edit)
        return sorted(k for k in base if new[k] != base[k])

    assert differs(lambda b: b.setdefault("curation", {}).update(filters_enabled=False)) == ["curated_documents"]
    assert differs(lambda b: b.setdefault("mixing", {}).update(temperature=3.0)) == ["mixture"]
    assert differs(lambda b: b["output"].update(total_tokens=700_000)) == ["mixture", "training_set"]
    assert differs(lambda b: b.update(seed=b.get("seed", 0) + 1)) == sorted(base)
