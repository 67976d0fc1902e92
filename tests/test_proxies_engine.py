"""The proxy sweep on the stage contract: members split into fixed populations, one shard task each, gathered into
the same `proxy_runs` table; byte-identical under inline, local (1 and 2 workers) and a real Ray cluster."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mixers.regmix.sampling import sample_sweep_mixtures
from pipeline.config.execution import ExecutionConfig
from pipeline.spec import load_spec, replace_section
from pipeline.store import DataRoot
from proxies.bins import Bins, build_token_bins
from proxies.population import train_population
from proxies.runs import run_proxy_sweeps
from proxies.sweep_stage import SweepStage, run_ids, run_sweep
from proxies.tokenizer import save_tokenizer, train_tokenizer
from tests.test_proxies import GSM8K, write_stage

REPO = Path(__file__).resolve().parent.parent
RAW = REPO / "examples" / "default" / "raw"

SPEC = """
name: proxies-engine
seed: 5
data_root: {root}
sources:
  - {{name: gsm8k, path: {raw}/math_gsm8k_train.jsonl, domain: math}}
  - {{name: reviews, path: {raw}/web_movie_reviews.jsonl.zst, domain: web}}
  - {{name: wiki, path: {raw}/ref_wikipedia_gensim_sample.jsonl.zst, domain: wiki}}
tokenizer: {{vocab_size: 320}}
proxies:
  model: {{n_layers: 1, d_model: 32, n_heads: 2, d_ff: 64, seq_len: 32}}
  train: {{steps: 4, batch_size: 4, warmup_steps: 1, eval_tokens: 256, eval_at: [2], device: cpu, compile: false,
           population_chunk: 2}}
  sweeps:
    - {{name: s1, n_mixtures: 3, seeds: [0, 1]}}
    - {{name: s2, n_mixtures: 2, seeds: [7]}}
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    """A data root holding token bins of three small domains (the sweeps' only input)."""
    folder = tmp_path_factory.mktemp("proxies-engine")
    (folder / "spec.yaml").write_text(SPEC.format(root=folder / "data", raw=RAW))
    spec = load_spec(folder / "spec.yaml")
    root = DataRoot(spec.data_root)
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:80]]
    math = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows]
    web = [f"review {i}: the film was {'good' if i % 2 else 'bad'} and the actors were fine." * 3 for i in range(30)]
    wiki = [f"Article {i}. Anarchism is a political philosophy; café № {i}." for i in range(30)]
    write_stage(root, "pruned", {"math": math, "web": web, "wiki": wiki})
    save_tokenizer(train_tokenizer(math + web + wiki, vocab_size=320), root.layout.tokenizer_json)
    build_token_bins(spec)
    return spec


def with_engine(spec, **execution):
    return replace_section(spec, execution=ExecutionConfig(**execution))


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fresh_runs(spec, **execution) -> dict[str, str]:
    """`proxy_runs` from scratch under ``execution``; every output file's sha256."""
    layout = DataRoot(spec.data_root).layout
    shutil.rmtree(layout.proxy_runs, ignore_errors=True)
    outcome = run_proxy_sweeps(with_engine(spec, **execution), sampler=sample_sweep_mixtures)
    assert all(c.passed for c in outcome.checks)
    assert not layout.proxy_sweep_work("s1").exists()  # the work folder goes once the sweep is gathered
    return tree(layout.proxy_runs)


def test_populations_gather_into_the_table_of_one_population_call(spec, tmp_path):
    """Split into populations of 2 (6 members -> 3 shard tasks) the sweep's table equals what one
    train_population call over every member (the sweep before the contract) returns, with the same run ids."""
    layout = DataRoot(spec.data_root).layout
    sweep, cfg = spec.proxies.sweeps[0], spec.proxies
    seed = spec.seed_for(f"proxy_runs/{sweep.name}")
    out = tmp_path / "s1"
    run = run_sweep(sweep, config=cfg, bins_dir=layout.token_bins, out_dir=out, work_dir=tmp_path / "work",
                    seed=seed, sampler=sample_sweep_mixtures, execution=ExecutionConfig(engine="inline"))
    assert run.populations == 3 and not run.reused
    bins = Bins.open(layout.token_bins)
    mixtures, _ = sample_sweep_mixtures(bins.prior(), 3, seed=seed, temperature=sweep.temperature,
                                        min_strength=sweep.min_strength, max_strength=sweep.max_strength)
    direct = train_population(bins, np.concatenate([mixtures] * 2), cfg, [0, 0, 0, 1, 1, 1], run_ids=run_ids(sweep, 3))
    table = pl.read_parquet(out / "results.parquet")
    assert table.equals(direct) and table["run_id"].unique().len() == 6
    assert json.loads((out / "meta.json").read_text())["sampler"] == "mixers.regmix.sample_mixtures"
    # Unchanged inputs: the sweep is reused without planning or training anything.
    again = run_sweep(sweep, config=cfg, bins_dir=layout.token_bins, out_dir=out, work_dir=tmp_path / "work",
                      seed=seed, sampler=None, execution=ExecutionConfig(engine="inline"))
    assert again.reused and again.results.equals(table)


def test_population_boundaries_come_from_the_spec_not_the_engine(spec, tmp_path):
    layout = DataRoot(spec.data_root).layout
    stage = SweepStage(bins_dir=layout.token_bins, out_dir=tmp_path / "o", work_dir=tmp_path / "w",
                       config=spec.proxies, mixtures=((1.0, 0.0, 0.0),) * 6, seeds=(0,) * 6,
                       run_ids=tuple(f"r{i}" for i in range(6)), seed=1, meta={}, population_limit=4, torch_threads=2)
    # population.chunk_sizes: equal populations of at most the limit (6 members, at most 4: two of 3).
    assert [t.settings.members for t in stage.plan()] == [(0, 1, 2), (3, 4, 5)]
    assert {t.settings.torch_threads for t in stage.plan()} == {2}


@pytest.mark.slow
def test_proxy_runs_are_byte_identical_under_inline_and_local_engines(spec):
    inline = fresh_runs(spec, engine="inline")
    assert {"s1/results.parquet", "s1/meta.json", "s2/results.parquet", "s2/meta.json", "loss_curves.png"} <= set(inline)
    # min_bytes_per_worker 0: the tiny bins would otherwise keep every population in this process.
    assert fresh_runs(spec, engine="local", workers=1, min_bytes_per_worker=0) == inline
    assert fresh_runs(spec, engine="local", workers=2, min_bytes_per_worker=0) == inline


@pytest.mark.slow
def test_proxy_runs_on_a_ray_cluster_are_byte_identical(spec):
    """Each population a Ray task on a real cluster started here (its workers run torch on 1 thread unless the
    task fixes it): the same files as inline."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    from pipeline.config.ray_engine import RayConfig
    from tests.test_ray_engine import NO_TOKEN_AUTH, RayCluster

    inline = fresh_runs(spec, engine="inline")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in NO_TOKEN_AUTH.items():
            patch.setenv(key, value)  # the driver (this process) as well as the cluster
        cluster = RayCluster()
        try:
            cluster.wait_ready()
            assert fresh_runs(spec, engine="ray", ray=RayConfig(address=cluster.address)) == inline
        finally:
            cluster.stop()
