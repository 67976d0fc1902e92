"""A real Dagster materialization of the staging asset, through the same runner `curamix run` uses."""

import dagster as dg

from assets.definitions import build_definitions
from assets.runner import run_all
from pipeline.spec import load_spec
from pipeline.store import DataRoot
from tests.conftest import EXAMPLE_SPEC


def test_materialize_documents_for_every_domain(data_root):
    instance = dg.DagsterInstance.ephemeral()
    results = run_all(EXAMPLE_SPEC, selection=["documents"], instance=instance)
    spec = load_spec(EXAMPLE_SPEC)
    assert len(results) == len(spec.domains)
    root = DataRoot(data_root)
    assert root.domains("documents") == sorted(spec.domains)
    for domain in spec.domains:
        stats = root.read_stats("documents", domain)
        assert stats["rows_read"] == stats["rows_kept"] + stats["rows_rejected"] > 0
    materialization = instance.get_latest_materialization_event(dg.AssetKey("documents")).asset_materialization
    assert materialization.partition in spec.domains
    assert {"rows_read", "rows_kept", "rejects_by_reason", "preview"} <= set(materialization.metadata)
    # Per-source counts of stats.json, and where each previewed row came from (issue 17 item 13).
    math = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("documents"), asset_partitions=["math"]), limit=1
    ).records[0].asset_materialization.metadata
    stats = root.read_stats("documents", "math")
    table = math["per_source"].value
    for name, s in stats["sources"].items():
        assert f"| {name} | {s['files']} | {s['rows_read']} | {s['rows_kept']} | {s['rows_rejected']} |" in table
    assert "| source_file |" in math["preview"].value and "raw/math_gsm8k_train.jsonl" in math["preview"].value
    evaluations = [
        e for r in results for e in r.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert len(evaluations) == len(spec.domains)
    assert all(e.event_specific_data.passed for e in evaluations)


def test_definitions_load_with_domain_partitions():
    defs = build_definitions(EXAMPLE_SPEC)
    graph = defs.resolve_asset_graph()
    partitions = graph.get(dg.AssetKey("documents")).partitions_def
    assert partitions.get_partition_keys() == load_spec(EXAMPLE_SPEC).domains


def test_plan_runs_domain_partitions_first_then_each_global_asset_in_order():
    from assets.runner import plan

    defs = build_definitions(EXAMPLE_SPEC)
    levels = plan(defs, dg.DagsterInstance.ephemeral())
    domains = load_spec(EXAMPLE_SPEC).domains
    assert [s.partition_key for s in levels[0]] == domains
    assert all(s.asset_keys == (dg.AssetKey("documents"),) for s in levels[0])
    global_steps = [s for level in levels[1:] for s in level]
    order = [s.asset_keys[0].to_user_string() for s in global_steps]
    assert all(len(s.asset_keys) == 1 and s.partition_key is None for s in global_steps)
    graph = defs.resolve_asset_graph()
    for i, key in enumerate(order):  # every asset comes after everything it depends on
        assert {p.to_user_string() for p in graph.get(dg.AssetKey(key)).parent_keys} - {"documents"} <= set(order[:i])
    assert order[-1] == "training_set"
