"""`curamix run --stale-only`: a second run does nothing; a spec edit or a raw-file edit re-runs exactly what it
touches, by the same rules as the UI's stale marker (plus raw-file hashes for `documents`)."""

import dagster as dg
import polars as pl
import yaml
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from assets.runner import run_all
from tests.test_operations_support import small_spec

SELECTION = ["concept_clusters"]  # documents -> curated_documents -> embeddings -> concept_clusters


def _run(spec_path, instance, selection=SELECTION, on_message=None):
    steps = []
    run_all(spec_path, selection=selection, instance=instance, stale_only=True, on_message=on_message,
            on_step=lambda step, done, total: steps.append(
                (",".join(k.to_user_string() for k in step.asset_keys), step.partition_key)))
    return steps


def test_stale_only_runs_what_changed(tmp_path):
    spec_path = small_spec(tmp_path)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        first = _run(spec_path, instance)
        assert sorted(first) == sorted([("documents", d) for d in ("math", "code", "techdocs")]
                                       + [(a, None) for a in ("curated_documents", "embeddings", "concept_clusters")])
        assert _run(spec_path, instance) == []  # nothing changed: nothing runs

        # A pruning setting: the pruning assets only, not the stages above them.
        body = yaml.safe_load(spec_path.read_text())
        body["pruning"]["clusters"]["k"] = 5
        spec_path.write_text(yaml.safe_dump(body, sort_keys=False))
        assert _run(spec_path, instance) == [("embeddings", None), ("concept_clusters", None)]

        # A curation setting that changes what survives curation: everything below it follows, in the same
        # level too (embeddings and concept_clusters are decided one after the other, not up front).
        body["curation"]["filters_enabled"] = False
        spec_path.write_text(yaml.safe_dump(body, sort_keys=False))
        assert _run(spec_path, instance) == [(a, None) for a in ("curated_documents", "embeddings", "concept_clusters")]

        # A raw file of one domain: that domain re-stages, and curation reads the new data.
        raw = tmp_path / "raw" / "math_gsm8k.jsonl"
        raw.write_text(raw.read_text() + '{"question": "What is 2 + 3?", "answer": "It is 5. #### 5"}\n')
        assert _run(spec_path, instance) == [("documents", "math"),
                                             *[(a, None) for a in ("curated_documents", "embeddings", "concept_clusters")]]

        # Touched without a byte changed: no change.
        raw.touch()
        assert _run(spec_path, instance) == []


def _curated_version(instance):
    record = instance.fetch_materializations(dg.AssetKey("curated_documents"), limit=1).records[0]
    return record.asset_materialization.tags[DATA_VERSION_TAG]


def test_a_new_file_curation_drops_as_a_near_duplicate_stops_at_curation(tmp_path):
    """Issue 17 item 11: a new raw file whose only document curation drops as a near duplicate re-stages its
    domain and re-runs curation, whose data version (a hash of what it wrote) stays the same: nothing below is
    stale, neither `--stale-only` nor the sensor re-runs it."""
    from assets import operations as ops
    from assets.definitions import build_definitions
    from assets.staleness import is_fresh, resolver

    spec_path = small_spec(tmp_path, math_rows=40, code_rows=20, techdocs_files=8)
    # SeTa reads the difficulty scores, so the reference proxy is trained (other methods skip it).
    body = yaml.safe_load(spec_path.read_text())
    body["pruning"]["method"] = "seta"
    spec_path.write_text(yaml.safe_dump(body, sort_keys=False))
    below = ["tokenizer", "embeddings", "reference_proxy"]
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        messages = []
        _run(spec_path, instance, below, on_message=messages.append)
        # Progress inside an asset reaches `curamix run`'s terminal (issue 17 item 16): the proxy's steps.
        assert any(m.startswith("step 12/12: mean train loss") for m in messages), messages[-5:]
        version = _curated_version(instance)
        full = build_definitions(spec_path)
        wanted = {"documents", "curated_documents", *below}
        defs = dg.Definitions(assets=[a for a in full.assets if a.key.to_user_string() in wanted],
                              sensors=full.sensors, resources=full.resources)

        def tick(cursor=None):
            sensor = defs.resolve_sensor_def(ops.SENSOR_NAME)
            with dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def(),
                                         resources=full.resources) as context:
                return sensor.evaluate_tick(context)

        quiet = tick()
        assert not quiet.run_requests, quiet.skip_message

        # The new file: an existing document with one word changed.
        original = (tmp_path / "raw" / "techdocs" / "doc0005.txt").read_text()
        (tmp_path / "raw" / "techdocs" / "doc9999.txt").write_text(original.replace(" the ", " a ", 1))
        (request,) = tick(quiet.cursor).run_requests
        assert {k.to_user_string() for k in request.asset_graph_subset.asset_keys} == {"documents"}

        assert _run(spec_path, instance, below) == [("documents", "techdocs"), ("curated_documents", None)]
        assert _curated_version(instance) == version
        reasons = pl.read_parquet(tmp_path / "data" / "curated" / "domain=techdocs" / "rejects.parquet")
        assert reasons.filter(pl.col("source_file").str.contains("doc9999"))["reason"].to_list() == ["near_duplicate"]
        graph = defs.resolve_asset_graph()
        status_of = resolver(instance, graph)
        assert all(is_fresh(status_of, graph, dg.AssetKey(k)) for k in below)  # what the UI shows
        after = tick(quiet.cursor)
        assert not after.run_requests and "every asset below documents is fresh" in after.skip_message
