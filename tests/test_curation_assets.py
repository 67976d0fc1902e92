"""The `curated_documents` asset: materializes through Dagster, check passes, launchpad overrides."""

from __future__ import annotations

import random

import dagster as dg
import pytest
import yaml

from assets.curation import CurationRunConfig
from pipeline.config.curation import CurationConfig
from pipeline.curation.run import STAGE
from pipeline.store import DataRoot
from tests.test_curation import _corpus


def test_launchpad_overrides_apply_over_the_spec():
    base = CurationConfig()
    got = CurationRunConfig(threshold=0.8, filters=False, exact_dedup=False,
                            overrides="domains: {web: {gopher_quality: {min_doc_words: 20}}}").apply(base)
    assert got.near_dedup.threshold == 0.8 and got.near_dedup.num_perm == base.near_dedup.num_perm
    assert got.filters_enabled is False and got.exact_dedup.enabled is False
    assert got.for_domain("web").gopher_quality.min_doc_words == 20
    with pytest.raises(dg.Failure, match="bands"):
        CurationRunConfig(bands=50).apply(base)


@pytest.mark.slow
def test_asset_materializes_with_accounting_check(tmp_path, data_root):
    from assets.runner import run_all

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(_corpus(tmp_path, random.Random(21))))
    results = run_all(spec_path, selection=["curated_documents"])
    last = results[-1]
    checks = [e.event_specific_data for e in last.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert [c.check_name for c in checks] == ["accounting"] and checks[0].passed
    mats = last.asset_materializations_for_node("curated_documents")
    meta = mats[0].metadata
    assert meta["rows_in"].value == meta["rows_kept"].value + meta["rows_dropped"].value
    assert "exact_duplicate" in meta["drops_by_domain"].value["web"]
    # issue 18: each domain's profile and why, and the guard's verdict, in the metadata
    assert meta["profiles"].value["code"] == {"profile": "code", "why": "guessed from the word 'code' of the name; "
                                                                        "set curation.domains.code.profile"}
    assert "drop_guard" in meta
    assert DataRoot(data_root).domains(STAGE) == ["books", "code", "web"]
