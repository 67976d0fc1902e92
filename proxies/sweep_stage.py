"""One sweep on the stage contract: its members split into fixed populations, one shard task each.

A sweep trains ``n_mixtures x len(seeds)`` proxies. ``plan()`` cuts them into populations whose boundaries
come from the spec (``proxies.train.population_chunk``, or the memory rule of ``population.auto_chunk`` for
the configured device), never from the engine or its worker count; ``run_shard`` trains one population as
one batched model (on the worker's GPU when it has one) and writes its rows of the results table;
``finish`` gathers them, in member order, into ``proxy_runs/<sweep>/results.parquet`` beside ``meta.json``.
Under ``execution.engine: ray`` each population is a shard task on one of the driver's Ray actors (``execution.ray.num_gpus_per_task``).

Bytes: a member's numbers depend on the members batched with it (float rounding of batched matmuls) and on
torch's CPU thread count (parallel reductions). Both are fixed at plan time (the populations, and the
planning process's torch thread count, in each task's settings), so inline, local and ray runs write the same files.

A whole sweep is skipped when the fingerprint of its inputs (``sweep_fingerprint``) matches the one in its
``meta.json``; inside a run, finished populations of a crashed attempt are reused (the engine's markers).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from pipeline.config.execution import ExecutionConfig
from pipeline.config.proxies import ProxiesConfig, SweepConfig
from pipeline.config.typed import to_plain
from pipeline.engine import ShardTask, run_stage, shard_dir
from pipeline.engine.parts import fixed_torch_threads
from pipeline.store import atomic_dir, write_json
from proxies.bins import Bins
from proxies.population import auto_chunk, chunk_sizes, pick_device, train_population

RESULTS = "results.parquet"
META = "meta.json"

# (prior, n, seed=, temperature=, min_strength=, max_strength=) -> (mixtures, the sampler's name): RegMix's
# candidate sampler, handed in by the caller (mixers depend on proxies, never the other way).
SweepSampler = Callable[..., tuple[np.ndarray, str]]

EMPTY_RESULTS = {"run_id": pl.String, "member": pl.Int64, "seed": pl.Int64, "step": pl.Int64}


def run_ids(sweep: SweepConfig, n_mixtures: int) -> list[str]:
    """``<sweep>-<mixture index>-s<seed>``, seeds outer: the members' order in the results table."""
    return [f"{sweep.name}-{i:03d}-s{s}" for s in sweep.seeds for i in range(n_mixtures)]


def sweep_fingerprint(config: ProxiesConfig, sweep: SweepConfig, bins_meta: dict, seed: int) -> str:
    """What a sweep's results depend on: its own settings, the training settings, the data, the seed."""
    cfg = to_plain(config)
    cfg.pop("sweeps", None)
    for key in ("score_tokens", "score_mode", "score_batch_tokens"):  # difficulty scoring only, not sweeps
        cfg.pop(key, None)
    inputs = {"sweep": to_plain(sweep), "proxies": cfg, "bins": bins_meta, "seed": seed}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def population_limit(config: ProxiesConfig, vocab_size: int) -> int:
    """Most members per population: the spec's ``population_chunk``, else what fits the configured device."""
    return auto_chunk(config, vocab_size, pick_device(config.train.device))


@dataclass(frozen=True)
class Population:
    """The settings of one shard: which members, with their mixtures, seeds and run ids."""

    members: tuple[int, ...]
    mixtures: tuple[tuple[float, ...], ...]
    seeds: tuple[int, ...]
    run_ids: tuple[str, ...]
    config: ProxiesConfig
    torch_threads: int


@dataclass
class SweepStage:
    bins_dir: Path
    out_dir: Path
    work_dir: Path
    config: ProxiesConfig
    mixtures: tuple[tuple[float, ...], ...]   # every member's mixture, in member order
    seeds: tuple[int, ...]
    run_ids: tuple[str, ...]
    seed: int                                 # the sweep's seed (the members' own seeds are the sweep's `seeds`)
    meta: dict                                # meta.json, written beside the results
    population_limit: int
    torch_threads: int
    name: str = "proxy_runs"
    version: str = "proxy-population-1"

    def _inputs(self) -> tuple[str, ...]:
        return tuple(sorted(str(p) for p in self.bins_dir.rglob("*") if p.is_file()))

    def plan(self) -> list[ShardTask]:
        inputs, tasks, start = self._inputs(), [], 0
        for k, size in enumerate(chunk_sizes(len(self.mixtures), self.population_limit)):
            members = range(start, start + size)
            start += size
            population = Population(members=tuple(members), mixtures=tuple(self.mixtures[i] for i in members),
                                    seeds=tuple(self.seeds[i] for i in members),
                                    run_ids=tuple(self.run_ids[i] for i in members), config=self.config,
                                    torch_threads=self.torch_threads)
            tasks.append(ShardTask(key=f"population-{k:04d}", inputs=inputs, settings=population, seed=self.seed))
        return tasks

    def run_shard(self, task: ShardTask, out: Path) -> dict:
        population: Population = task.settings
        started = time.perf_counter()
        with fixed_torch_threads(population.torch_threads):
            table = train_population(Bins.open(self.bins_dir), np.array(population.mixtures), population.config,
                                     list(population.seeds), run_ids=list(population.run_ids))
        # train_population numbers members from 0; the sweep's numbering continues across populations.
        table = table.with_columns(pl.col("member") + population.members[0])
        table.write_parquet(out / RESULTS)
        return {"members": len(population.members), "seconds": round(time.perf_counter() - started, 3)}

    def finish(self, results: list[dict]) -> dict:
        parts = [pl.read_parquet(shard_dir(self, t.key) / RESULTS) for t in self.plan()]
        table = pl.concat(parts).sort("member", "step").rechunk()
        with atomic_dir(self.out_dir) as tmp:
            table.write_parquet(tmp / RESULTS)
            write_json(tmp / META, self.meta)
        return {"train_seconds": round(sum(r["seconds"] for r in results), 1), "populations": len(results)}


def write_disabled(out_dir: Path, meta: dict) -> None:
    """proxies.enabled false: an empty results table (no run feeds the mixers) and the meta."""
    with atomic_dir(out_dir) as tmp:
        pl.DataFrame(schema=EMPTY_RESULTS).write_parquet(tmp / RESULTS)
        write_json(tmp / META, meta)


@dataclass(frozen=True)
class SweepRun:
    results: pl.DataFrame
    meta: dict
    reused: bool
    train_seconds: float = 0.0
    populations: int = 0


def run_sweep(sweep: SweepConfig, *, config: ProxiesConfig, bins_dir: Path, out_dir: Path, work_dir: Path,
              seed: int, sampler: SweepSampler, execution: ExecutionConfig | None = None,
              progress: Callable[[str], None] | None = None) -> SweepRun:
    """Train one sweep into ``out_dir`` (atomically) on ``execution``'s engine, or reuse it when its
    fingerprint is unchanged."""
    bins = Bins.open(bins_dir)
    fingerprint = sweep_fingerprint(config, sweep, bins.meta, seed)
    meta_path = out_dir / META
    if meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") == fingerprint:
        if progress:
            progress(f"sweep {sweep.name}: inputs unchanged, reusing {out_dir}")
        return SweepRun(pl.read_parquet(out_dir / RESULTS), json.loads(meta_path.read_text()), reused=True)
    meta = {"sweep": to_plain(sweep), "domains": bins.domains, "targets": sorted(bins.targets),
            "prior": bins.prior().tolist(), "config": to_plain(config), "enabled": config.enabled,
            "tokenizer_sha256": bins.meta["tokenizer_sha256"], "fingerprint": fingerprint}
    if not config.enabled:
        write_disabled(out_dir, meta)
        return SweepRun(pl.read_parquet(out_dir / RESULTS), meta, reused=False)
    mixtures, sampler_name = sampler(bins.prior(), sweep.n_mixtures, seed=seed, temperature=sweep.temperature,
                                     min_strength=sweep.min_strength, max_strength=sweep.max_strength)
    meta["sampler"] = sampler_name
    rows = tuple(tuple(float(x) for x in m) for m in mixtures)
    stage = SweepStage(bins_dir=bins_dir, out_dir=out_dir, work_dir=work_dir, config=config,
                       mixtures=rows * len(sweep.seeds), seeds=tuple(s for s in sweep.seeds for _ in rows),
                       run_ids=tuple(run_ids(sweep, len(rows))), seed=seed, meta=meta,
                       population_limit=population_limit(config, bins.vocab_size), torch_threads=torch.get_num_threads())
    done = run_stage(stage, execution=execution, progress=progress)
    return SweepRun(pl.read_parquet(out_dir / RESULTS), meta, reused=False, **done)


__all__ = ["SweepStage", "Population", "SweepRun", "run_sweep", "run_ids", "sweep_fingerprint", "population_limit",
           "SweepSampler"]
