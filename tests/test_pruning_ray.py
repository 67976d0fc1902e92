"""Embeddings, concept clusters, difficulty scores and pruning under `engine: ray` on a real Ray cluster this file
starts (`ray start --head` on free ports, stopped at the end): the same bytes as `local`, and stages with a worker
state (the fitted embedder, the proxy model) run on Ray actors that load it once each."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_pruning_engine import (INLINE, OUTPUTS, CountingStage, engine_roots, loads, proxy_and_tokenizer,
                                       run_pruning_stages, tree)
from tests.test_pruning_stage import _with_method, curated  # noqa: F401 (fixture)

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from pipeline.engine import run_stage  # noqa: E402
from tests.test_ray_engine import cluster, kill_first_worker, on_ray  # noqa: E402,F401 (the module's real cluster fixture)


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


@dataclass
class HeldCountingStage(CountingStage):
    """The toy stage, whose shards wait while ``hold/wait`` exists (so that the test can kill an actor mid-shard)."""

    hold: str = ""

    def run_shard(self, task, out, state):
        Path(self.hold, f"{task.key}.{os.getpid()}").touch()
        while Path(self.hold, "wait").exists():
            time.sleep(0.05)
        return super().run_shard(task, out, state)


@pytest.mark.slow
def test_an_actor_killed_mid_shard_is_restarted_reloads_its_state_and_the_shard_reruns(cluster, tmp_path):
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "wait").touch()
    stage = HeldCountingStage(tmp_path / "stage", hold=str(hold))
    stage.folder.mkdir()
    killed: list[int] = []
    killer = threading.Thread(target=kill_first_worker, args=(cluster, hold, killed), kwargs={"title": "ShardWorker"})
    killer.start()
    try:
        results = run_stage(stage, execution=on_ray(cluster, max_retries=2))
    finally:
        (hold / "wait").unlink(missing_ok=True)
        killer.join()
    assert killed, "no busy actor was found to kill"
    victim = next(p.name.rsplit(".", 1)[0] for p in hold.glob("*.*") if p.name.endswith(f".{killed[0]}"))
    reruns = [p.name for p in hold.glob(f"{victim}.*")]
    assert len(reruns) == 2, reruns  # the killed shard ran again, in the restarted actor
    assert len(results) == 6 and all(r["state_pid"] == r["pid"] for r in results)
    # the restarted actor loaded the state again: one load per actor process, the killed one included
    assert str(killed[0]) in loads(stage) and len(loads(stage)) == len({r["pid"] for r in results} | set(killed))
