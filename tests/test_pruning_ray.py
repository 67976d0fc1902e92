"""Embeddings, concept clusters, difficulty scores and pruning under `engine: ray` on a real Ray cluster this file
starts (`ray start --head` on free ports, stopped at the end): the same bytes as `local`, and stages with a worker
state (the fitted embedder, the proxy model) run on Ray actors that load it once each."""

from __future__ import annotations

import os

import pytest

from tests.test_pruning_engine import (INLINE, OUTPUTS, CountingStage, engine_roots, loads, proxy_and_tokenizer,
                                       run_pruning_stages, tree)
from tests.test_pruning_stage import _with_method, curated  # noqa: F401 (fixture)

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from pipeline.engine import run_stage  # noqa: E402
from tests.test_ray_engine import cluster, on_ray  # noqa: E402,F401 (the module's real cluster fixture)


@pytest.mark.slow
def test_worker_state_is_loaded_once_per_ray_actor(cluster, tmp_path):
    stage = CountingStage(tmp_path)
    results = run_stage(stage, execution=on_ray(cluster))
    pids = {r["pid"] for r in results}
    assert all(r["state_pid"] == r["pid"] for r in results)
    # one load per actor (the cluster has 2 CPUs: at most 2 actors of 1 CPU), not one per shard (6)
    assert loads(stage) == sorted(str(p) for p in pids) and len(pids) <= 2 and os.getpid() not in pids
    assert [p.name for p in stage.work_dir.parent.iterdir() if p.name == ".work"] == []


@pytest.mark.slow
def test_pruning_stages_are_byte_identical_under_ray_and_inline(cluster, curated, tmp_path):
    """A shard per domain (and per curated part) here; tests/test_pruning_engine.py shows inline = local with
    many small shards."""
    spec_path, _, base = curated
    spec = _with_method(spec_path, method="seta", embedding={"dim": 16, "fit_sample": 1000, "batch_size": 16})
    model, tokenizer = proxy_and_tokenizer(base)
    roots = engine_roots(base, tmp_path, ["inline", "ray"])
    run_pruning_stages(spec, roots["inline"], INLINE, model, tokenizer)
    run_pruning_stages(spec, roots["ray"], on_ray(cluster), model, tokenizer)
    for key in OUTPUTS:
        inline = tree(roots["inline"].root / key)
        assert len(inline) >= 1 and tree(roots["ray"].root / key) == inline, key
