"""Difficulty scores on a bounded number of tokens per document vs every token (issue 12, item 7).

Workload: ../shared/corpora (every file, bench/corpus.py's domains), staged with curamix's staging code, then a
seeded ``FRACTION`` (``--quick``: 1%) of each source's documents (so each source keeps its length distribution: the
cost of "all" grows with the tokens of a document, and the corpus mixes 150-token GSM8K problems with 400 KB books).
Curation is not run (it would only remove some documents). On that pool, as the pipeline does by default: a
byte-level BPE (vocab 4096, trained on 5 MB of the pool drawn evenly across domains), token bins, a reference proxy
(default ``ProxiesConfig``, eager) trained on the natural mixture. On the shared 2-core machine under load the 5% run
took over 40 minutes (scoring "all" dominates); the committed result is the ``--quick`` run.

Then ``difficulty_scores``' code (``proxies.scoring.score_stage``, streaming) scores the pool once with every token
(``all``: today's cost) and once per bounded budget (prefix / seeded windows of N tokens), in one process, one after
another. Per budget:

- ``spearman``: rank correlation with the full-document scores, over the whole pool and within each domain (SeTa
  groups each domain's documents by loss, so the within-domain ranks are what it uses);
- ``cost_ratio``: CPU seconds (user + system of this process, all threads) per document vs ``all``; CPU time is
  steadier than wall time on the shared machine; wall time is reported too;
- ``seta_overlap``: static SeTa (default groups and window, 50% per domain, same random stream) on the bounded
  scores vs on the full ones: the share of selected documents both keep. For scale, ``seta_overlap_noise`` is the
  same for two runs on the full scores with different random streams (SeTa thins at random), and a random
  selection of 50% overlaps another by about 50%.

The default budget is the cheapest one with Spearman >= 0.9 over the pool and cost < 5% of ``all``'s.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

FRACTION = 0.05
BUDGETS = [("prefix", 32), ("prefix", 64), ("prefix", 128), ("prefix", 256), ("windows", 32), ("windows", 64),
           ("windows", 128), ("windows", 256)]
QUICK_BUDGETS = [("prefix", 64), ("prefix", 128), ("windows", 64), ("windows", 128)]
GOAL_SPEARMAN, GOAL_COST = 0.9, 0.05


def build_pool(work: Path, fraction: float):
    """Stage the corpora, keep ``fraction`` of each source (seeded), as the 'curated' stage; returns (spec, root).

    ``BENCH_SCORING_STAGED`` (a data root whose ``documents`` stage holds the staged corpora, e.g. a previous run's)
    skips the staging, the slow part on a loaded machine."""
    import os

    import polars as pl

    from bench.corpus import write_spec
    from pipeline.spec import load_spec
    from pipeline.staging import stage_domain
    from pipeline.store import DataRoot

    spec = load_spec(write_spec(work, "bench-scoring"))
    root = DataRoot(spec.data_root)
    staged = DataRoot(os.environ["BENCH_SCORING_STAGED"]) if os.environ.get("BENCH_SCORING_STAGED") else None
    for domain in spec.domains:
        if staged is None:
            stage_domain(spec, domain, root=root)
        frame = (staged or root).scan("documents", [domain]).collect()
        parts = []
        for index, (source, group) in enumerate(sorted(frame.group_by("source"), key=lambda g: g[0])):
            keep = max(3, math.ceil(fraction * group.height))
            parts.append(group[np.sort(np.random.default_rng([0, index]).permutation(group.height)[:keep])])
        with root.write_domain("curated", domain) as tmp:
            (tmp / "data").mkdir()
            pl.concat(parts).write_parquet(tmp / "data" / "part-0.parquet")
    return spec, root


def reference_proxy(spec, root, work: Path):
    """The pipeline's default tokenizer and reference proxy (natural mixture) on the pool."""
    import dataclasses

    from pipeline.config.proxies import ProxiesConfig
    from proxies.bins import Bins, build_bins
    from proxies.population import train_population
    from proxies.tokenizer import sample_training_texts, train_tokenizer

    tokenizer = train_tokenizer(sample_training_texts(root, "curated", spec.domains, max_bytes=5_000_000, seed=0),
                                vocab_size=4096)
    config = ProxiesConfig()
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, compile=False, device="cpu"))
    build_bins(root, "curated", spec.domains, work / "bins", tokenizer=tokenizer, tokenizer_sha256="bench",
               validation_fraction=config.validation_fraction, seed=0)
    bins = Bins.open(work / "bins")
    kept = {}
    results = train_population(bins, bins.prior()[None, :], config, 0, keep=lambda i, model, j: kept.update(m=model))
    final = results.filter(results["step"] == results["step"].max())
    return tokenizer, kept["m"], round(float(final["loss_val_mean"][0]), 4), config


def score(root, spec, model, tokenizer, budget, out: Path) -> dict:
    import polars as pl

    from pipeline.config.execution import ExecutionConfig
    from proxies.scoring import score_stage
    from proxies.tokenizer import eot_id

    wall, cpu = time.perf_counter(), time.process_time()
    # inline: every shard in this process, so that process_time counts all of the scoring's CPU
    summary = score_stage(root, "curated", spec.domains, model=model, tokenizer=tokenizer, bos=eot_id(tokenizer),
                          out=out, budget=budget, execution=ExecutionConfig(engine="inline"))
    figures = {"cpu_s": round(time.process_time() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2),
               "tokens_scored": sum(v["tokens_scored"] for v in summary.values())}
    return figures, pl.read_parquet(out)


def seta_keep(frame, seed: int) -> set[str]:
    """Static SeTa per domain at 50% (pipeline defaults), as the pruning stage applies it."""
    from pipeline.config.pruning import SeTaConfig
    from pipeline.pruning.seta import seta_static

    config = SeTaConfig()
    kept: set[str] = set()
    for domain in sorted(set(frame["domain"].to_list())):
        part = frame.filter(frame["domain"] == domain).sort("doc_id")
        losses = np.nan_to_num(part["loss"].to_numpy(), nan=0.0)
        result = seta_static(losses, target=part.height // 2, groups=config.groups, window_scale=config.window_scale,
                             window_start=config.window_start, rng=np.random.default_rng([seed, len(kept)]))
        kept |= set(np.asarray(part["doc_id"].to_list())[result.keep].tolist())
    return kept


def compare(full, bounded) -> dict:
    from scipy.stats import spearmanr

    joined = full.join(bounded.select("doc_id", "domain", bounded_loss="loss"), on=["doc_id", "domain"])
    joined = joined.filter(joined["loss"].is_not_nan() & joined["bounded_loss"].is_not_nan())
    by_domain = {}
    for domain in sorted(set(joined["domain"].to_list())):
        part = joined.filter(joined["domain"] == domain)
        if part.height >= 10:
            by_domain[domain] = round(float(spearmanr(part["loss"], part["bounded_loss"]).statistic), 4)
    full_keep, bounded_keep = seta_keep(full, 0), seta_keep(bounded, 0)
    return {"spearman": round(float(spearmanr(joined["loss"], joined["bounded_loss"]).statistic), 4),
            "spearman_by_domain": by_domain,
            "spearman_domain_median": round(float(np.median(list(by_domain.values()))), 4),
            "spearman_domain_min": round(float(min(by_domain.values())), 4),
            "seta_overlap": round(len(full_keep & bounded_keep) / max(1, len(full_keep)), 4)}


def run(quick: bool = False) -> dict:
    from proxies.scoring import ScoreBudget

    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    try:
        started = time.perf_counter()
        spec, root = build_pool(work, 0.01 if quick else FRACTION)
        pool = root.scan("curated").select("n_chars").collect()
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        tokenizer, model, val_loss, config = reference_proxy(spec, root, work)
        proxy_s = time.perf_counter() - started
        full_figures, full = score(root, spec, model, tokenizer, ScoreBudget(), work / "all.parquet")
        docs = full.height
        figures: dict = {
            "pool": {"docs": docs, "chars": int(pool["n_chars"].sum()), "fraction_of_each_source": 0.01 if quick else FRACTION,
                     "tokens": int(full["n_tokens"].sum()), "median_doc_tokens": int(full["n_tokens"].median()),
                     "mean_doc_tokens": round(float(full["n_tokens"].mean()), 1)},
            "reference_proxy": {"steps": config.train.steps, "val_loss_mean": val_loss, "seq_len": config.model.seq_len},
            "setup_seconds": {"stage_and_sample": round(build_s, 1), "tokenizer_bins_proxy": round(proxy_s, 1)},
            "all": full_figures | {"cpu_ms_per_doc": round(1000 * full_figures["cpu_s"] / docs, 3)},
            "seta_overlap_noise": round(len(seta_keep(full, 0) & seta_keep(full, 1)) / max(1, len(seta_keep(full, 0))), 4),
            "budgets": {},
        }
        for mode, tokens in QUICK_BUDGETS if quick else BUDGETS:
            budget = ScoreBudget(tokens, mode, seed=0)
            bounded_figures, bounded = score(root, spec, model, tokenizer, budget, work / f"{mode}{tokens}.parquet")
            figures["budgets"][f"{mode}:{tokens}"] = bounded_figures | compare(full, bounded) | {
                "cpu_ms_per_doc": round(1000 * bounded_figures["cpu_s"] / docs, 3),
                "cost_ratio": round(bounded_figures["cpu_s"] / full_figures["cpu_s"], 4),
                "wall_ratio": round(bounded_figures["wall_s"] / full_figures["wall_s"], 4),
                "docs_scored_whole": int((full["n_tokens"] <= tokens).sum())}
        meeting = [(v["cost_ratio"], k) for k, v in figures["budgets"].items()
                   if v["spearman"] >= GOAL_SPEARMAN and v["cost_ratio"] < GOAL_COST]
        figures["goals"] = {"spearman": GOAL_SPEARMAN, "cost_ratio": GOAL_COST}
        figures["cheapest_meeting_goals"] = min(meeting)[1] if meeting else None
        best = max(figures["budgets"].items(), key=lambda kv: kv[1]["spearman"])
        figures["best_spearman"] = best[0]
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


def current_default(f: dict) -> str:
    """The pipeline's default budget as the code says now (not stored with the results: a default chosen from
    these figures changes after the run that measured it), with its measured figures when it was among the budgets."""
    from pipeline.config.proxies import ProxiesConfig

    config = ProxiesConfig()
    name = f"{config.score_mode}:{config.score_tokens}"
    measured = f["budgets"].get(name)
    if measured is None:
        return f"the pipeline's default, {name}, is not among the measured budgets"
    return (f"the pipeline's default is {name} (Spearman {measured['spearman']}, {measured['cost_ratio']:.1%} of "
            "all's cost)")


def summarize(f: dict) -> str:
    rows = ["| budget | Spearman (pool) | within domains: median / min | cost vs all (CPU) | SeTa overlap |",
            "|---|---|---|---|---|"]
    for name, b in f["budgets"].items():
        rows.append(f"| {name} | {b['spearman']} | {b['spearman_domain_median']} / {b['spearman_domain_min']} | "
                    f"{b['cost_ratio']:.1%} | {b['seta_overlap']:.1%} |")
    p, a = f["pool"], f["all"]
    return (f"Pool: {p['docs']:,} documents ({p['fraction_of_each_source']:.0%} of each source of ../shared/corpora), "
            f"{p['tokens']:,} tokens (median {p['median_doc_tokens']}, mean {p['mean_doc_tokens']} per document). Scoring "
            f"every token: {a['cpu_s']} CPU s ({a['cpu_ms_per_doc']} ms per document). SeTa's overlap between two "
            f"random streams on the same full scores: {f['seta_overlap_noise']:.1%}. Cheapest budget meeting both goals "
            f"(Spearman >= {f['goals']['spearman']}, cost < {f['goals']['cost_ratio']:.0%}): "
            f"**{f['cheapest_meeting_goals']}**; {current_default(f)}. The machine was shared (CPU seconds compared).\n\n"
            + "\n".join(rows))
