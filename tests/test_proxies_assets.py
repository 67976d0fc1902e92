"""The proxy assets materialized through Dagster on a tiny spec (curated/pruned stages written by the test)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from assets.context import BuildContext
from assets.proxies import build_stage
from assets.resources import CuramixResource
from pipeline.spec import load_spec
from pipeline.store import DataRoot
from proxies.bins import Bins
from tests.test_proxies import GSM8K, write_stage

REPO = Path(__file__).resolve().parent.parent
RAW = REPO / "examples" / "default" / "raw"

SPEC = f"""
name: proxies-test
seed: 3
sources:
  - {{name: gsm8k, path: {RAW / 'math_gsm8k_train.jsonl'}, domain: math}}
  - {{name: reviews, path: {RAW / 'web_movie_reviews.jsonl.zst'}, domain: web}}
  - {{name: wiki, path: {RAW / 'ref_wikipedia_gensim_sample.jsonl.zst'}, domain: wiki}}
tokenizer: {{vocab_size: 320, max_training_bytes: 200000}}
pruning: {{method: seta}}
proxies:
  model: {{n_layers: 1, d_model: 32, n_heads: 2, d_ff: 64, seq_len: 32}}
  train: {{steps: 4, batch_size: 4, warmup_steps: 1, eval_tokens: 256, eval_at: [2], device: cpu, compile: false}}
  targets:
    - {{name: probe, path: probe.jsonl, template: "{{q}} {{a}}"}}
  sweeps:
    - {{name: s1, n_mixtures: 3, seeds: [0, 1]}}
"""


@pytest.mark.slow
def test_proxy_assets_materialize(data_root, tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    (tmp_path / "probe.jsonl").write_text("\n".join(json.dumps({"q": f"what is {i}?", "a": str(i)}) for i in range(20)))
    spec = load_spec(spec_path)
    root = DataRoot(spec.data_root)
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:120]]
    math = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows]
    web = [f"review {i}: the film was {'good' if i % 2 else 'bad'} and the actors were fine." * 3 for i in range(40)]
    wiki = [f"Article {i}. Anarchism is a political philosophy; café № {i} — 🤖." for i in range(30)]
    for stage in ("curated", "pruned"):
        write_stage(root, stage, {"math": math, "web": web, "wiki": wiki})

    parts = build_stage(BuildContext(spec=spec, domain_partitions=dg.StaticPartitionsDefinition(spec.domains)))
    defs = dg.Definitions(assets=parts.assets, resources={"curamix": CuramixResource(spec_path=str(spec_path))})
    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(
        asset_selection=[dg.AssetKey(k) for k in ("tokenizer", "reference_proxy", "difficulty_scores", "token_bins")],
        instance=instance)
    assert result.success
    checks = {e.event_specific_data.check_name: e.event_specific_data.passed for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks == {"roundtrip": True, "split_and_sizes": True}

    meta = json.loads((root.root / "tokenizer" / "meta.json").read_text())
    assert meta["vocab_size"] == 320 and len(meta["sha256"]) == 64
    scores = pl.read_parquet(root.root / "difficulty_scores" / "scores.parquet")
    assert scores.columns == ["doc_id", "domain", "loss", "n_tokens"] and scores.height == 190
    assert scores["loss"].is_finite().all() and (scores["n_tokens"] > 0).all()
    bins = Bins.open(root.root / "token_bins")
    assert bins.domains == ["math", "web", "wiki"] and list(bins.targets) == ["probe"]

    run = job.execute_in_process(asset_selection=[dg.AssetKey("proxy_runs")], instance=instance)
    assert run.success
    assert run.asset_materializations_for_node("proxy_runs")[0].metadata["sweeps"].value["s1"]["reused"] is False
    results = pl.read_parquet(root.root / "proxy_runs" / "s1" / "results.parquet")
    final = results.filter(pl.col("step") == 4)
    assert final.height == 6 and sorted(set(results["step"])) == [2, 4]
    weights = final.select("w_math", "w_web", "w_wiki").to_numpy()
    assert np.allclose(weights.sum(1), 1) and np.allclose(weights[:3], weights[3:])  # same mixtures, two seeds
    for col in ("loss_math", "loss_web", "loss_wiki", "loss_target_probe", "loss_val_mean"):
        assert final[col].is_finite().all()
    assert sorted(final["seed"].to_list()) == [0, 0, 0, 1, 1, 1]
    # unchanged inputs: the sweep is reused, not retrained
    again = job.execute_in_process(asset_selection=[dg.AssetKey("proxy_runs")], instance=instance)
    assert again.asset_materializations_for_node("proxy_runs")[0].metadata["sweeps"].value["s1"]["reused"] is True
    assert pl.read_parquet(root.root / "proxy_runs" / "s1" / "results.parquet").equals(results)


def test_proxy_assets_declare_what_they_read_and_skip_scores_nobody_reads(data_root, tmp_path):
    """Issue 18 item 5: reference_proxy and difficulty_scores depend on the curated documents (and the
    tokenizer) they train on and score; without SeTa pruning nothing reads them, so they are skipped
    cheaply, and switching SeTa on changes their code version (so they become stale and re-run)."""
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC.replace("pruning: {method: seta}\n", ""))
    (tmp_path / "probe.jsonl").write_text(json.dumps({"q": "what?", "a": "1"}))
    spec = load_spec(spec_path)
    parts = build_stage(BuildContext(spec=spec, domain_partitions=dg.StaticPartitionsDefinition(spec.domains)))
    assets = {a.key.to_user_string(): a for a in parts.assets}
    for name in ("reference_proxy", "difficulty_scores"):
        deps = {k.to_user_string() for k in assets[name].dependency_keys}
        assert {"curated_documents", "tokenizer"} <= deps, (name, deps)
    defs = dg.Definitions(assets=parts.assets, resources={"curamix": CuramixResource(spec_path=str(spec_path))})
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey("reference_proxy"), dg.AssetKey("difficulty_scores")])
    assert result.success  # no tokenizer, no curated documents on disk: nothing was read
    meta = result.asset_materializations_for_node("difficulty_scores")[0].metadata
    assert "pruning.method seta" in meta["skipped"].value
    root = DataRoot(spec.data_root)
    assert pl.read_parquet(root.root / "difficulty_scores" / "scores.parquet").height == 0
    assert not (root.root / "reference_proxy" / "model.safetensors").exists()
    from pipeline.config.pruning import PruningConfig
    from pipeline.spec import replace_section

    with_seta = replace_section(spec, pruning=PruningConfig(method="seta"))
    again = build_stage(BuildContext(spec=with_seta, domain_partitions=dg.StaticPartitionsDefinition(spec.domains)))
    versions = {a.key.to_user_string(): a.code_versions_by_key[a.key] for a in again.assets}
    assert versions["difficulty_scores"] != assets["difficulty_scores"].code_versions_by_key[assets["difficulty_scores"].key]
