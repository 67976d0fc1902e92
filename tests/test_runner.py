"""`curamix run --stale-only`: a second run does nothing; a spec edit or a raw-file edit re-runs exactly what it
touches, by the same rules as the UI's stale marker (plus raw-file hashes for `documents`)."""

import dagster as dg
import yaml

from assets.runner import run_all
from tests.test_operations_support import small_spec

SELECTION = ["concept_clusters"]  # documents -> curated_documents -> embeddings -> concept_clusters


def _run(spec_path, instance):
    steps = []
    run_all(spec_path, selection=SELECTION, instance=instance, stale_only=True,
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
