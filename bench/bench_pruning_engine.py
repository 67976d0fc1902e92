"""Pruning's four stages on the stage contract: `inline` vs `local` (2 workers), side by side in one run.

Pool: ``fraction`` of every source of ../shared/corpora (staged, then sampled per source with a fixed seed, as
``bench_scoring`` builds it) as the ``curated`` stage. For each engine a copy of that data root; on it, each stage
runs in a fresh child process (``bench/_measure.py``: wall, CPU seconds of the process and its workers, peak RSS of
the largest process it waited for: ``local``'s forkserver workers are not among them), in pipeline order: ``embeddings`` (hashing-svd, the default), ``concept_clusters``,
``difficulty_scores`` (the default budget, 128 tokens in windows, with an untrained proxy of the default shape: its
cost is a trained one's) and ``pruned_documents`` (the default method, ssl). Then every output file of the two
roots is hashed and compared. ``local`` uses ``min_bytes_per_worker: 0`` so that it starts its 2 workers even on
the quick pool.

Run: ``python -m bench.run pruning_engine`` (``--quick``: 1% of each source). Timing needs a quiet machine; the
figures say whether it was shared.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

FRACTION = 0.05
STAGES = ["embeddings", "concept_clusters", "difficulty_scores", "pruned"]
ENGINES = {"inline": {"engine": "inline"}, "local": {"engine": "local", "workers": 2, "min_bytes_per_worker": 0}}


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def prepare(work: Path, fraction: float) -> tuple[Path, Path]:
    """The curated pool, a tokenizer and an untrained default proxy; returns (spec path, data root)."""
    import torch

    from bench.bench_scoring import build_pool
    from pipeline.config.proxies import ProxiesConfig
    from proxies.model import PopulationLM
    from proxies.sweep import save_proxy
    from proxies.tokenizer import sample_training_texts, save_tokenizer, train_tokenizer

    spec, root = build_pool(work, fraction)
    tokenizer = train_tokenizer(sample_training_texts(root, "curated", spec.domains, max_bytes=2_000_000, seed=0),
                                vocab_size=4096)
    save_tokenizer(tokenizer, root.layout.tokenizer_json)
    torch.manual_seed(0)
    model = PopulationLM(ProxiesConfig().model, tokenizer.get_vocab_size(), n_members=1)
    model.init_members([0])
    save_proxy(root.layout.reference_proxy, model, 0)
    return spec.path, root.root


def child(stage: str, engine: str, spec_path: str, data_root: str) -> None:
    """One stage on one engine (the measured process)."""
    from bench._measure import emit
    from pipeline.config.execution import ExecutionConfig
    from pipeline.pruning import INPUT_STAGE
    from pipeline.pruning.clusters import assign_clusters
    from pipeline.pruning.embed import embed_stage
    from pipeline.pruning.run import prune_stage
    from pipeline.spec import load_spec
    from pipeline.store import DataRoot
    from proxies.scoring import ScoreBudget, score_stage
    from proxies.tokenizer import eot_id, load_tokenizer

    spec = load_spec(spec_path, data_root=data_root)
    root = DataRoot(data_root)
    execution = ExecutionConfig(**ENGINES[engine])
    if stage == "embeddings":
        rows = embed_stage(root, spec.pruning.embedding, seed=spec.seed_for("embeddings"), input_stage=INPUT_STAGE,
                           execution=execution).n_docs
    elif stage == "concept_clusters":
        rows = assign_clusters(root, spec.pruning.clusters, seed=spec.seed_for("concept_clusters"),
                               execution=execution)["n_docs"]
    elif stage == "difficulty_scores":
        cfg = spec.proxies
        tokenizer = load_tokenizer(root.layout.tokenizer_json)
        summary = score_stage(root, INPUT_STAGE, root.domains(INPUT_STAGE), proxy_dir=root.layout.reference_proxy,
                              tokenizer_json=root.layout.tokenizer_json, bos=eot_id(tokenizer),
                              out=root.layout.difficulty_scores_file,
                              budget=ScoreBudget.of(cfg.score_tokens, cfg.score_mode, spec.seed_for("difficulty_scores")),
                              batch_tokens=cfg.score_batch_tokens, execution=execution)
        rows = sum(v["docs"] for v in summary.values())
    else:
        rows = prune_stage(spec, root=root, execution=execution).rows_kept
    emit({"rows_out": rows})


def run(quick: bool = False) -> dict:
    from bench._measure import python_env, run_measured

    work = Path(tempfile.mkdtemp(prefix="bench-pruning-engine-"))
    try:
        spec_path, base = prepare(work, 0.01 if quick else FRACTION)
        roots = {}
        for engine in ENGINES:
            roots[engine] = work / f"root-{engine}"
            shutil.copytree(base, roots[engine], ignore=shutil.ignore_patterns("documents"))
        figures: dict = {"pool": {"fraction_of_each_source": 0.01 if quick else FRACTION,
                                  "curated_bytes": sum(p.stat().st_size for p in (base / "curated").rglob("*.parquet"))},
                         "load_average_at_start": list(os.getloadavg()), "stages": {}}
        for stage in STAGES:
            row = {}
            for engine in ENGINES:
                row[engine] = run_measured([sys.executable, "-m", "bench.bench_pruning_engine", "child", stage, engine,
                                            str(spec_path), str(roots[engine])], env=python_env())
            row["identical"] = tree(roots["inline"] / stage) == tree(roots["local"] / stage)
            row["local_speedup_wall"] = round(row["inline"]["process_wall_s"] / row["local"]["process_wall_s"], 3)
            figures["stages"][stage] = row
        figures["load_average_at_end"] = list(os.getloadavg())
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarize(f: dict) -> str:
    rows = ["| stage | inline wall s | local (2 workers) wall s | speedup | CPU s inline / local | peak RSS MiB inline / "
            "local | rows out | same bytes |", "|---|---|---|---|---|---|---|---|"]
    for stage, r in f["stages"].items():
        i, lo = r["inline"], r["local"]
        rows.append(f"| {stage} | {i['process_wall_s']:.1f} | {lo['process_wall_s']:.1f} | {r['local_speedup_wall']:.2f}x | "
                    f"{i['process_cpu_s']:.1f} / {lo['process_cpu_s']:.1f} | {i['peak_rss_mib']:.0f} / {lo['peak_rss_mib']:.0f} | "
                    f"{i['rows_out']:,} | {'yes' if r['identical'] else '**no**'} |")
    load = f["load_average_at_start"][0], f["load_average_at_end"][0]
    return (f"Pool: {f['pool']['fraction_of_each_source']:.0%} of each source of ../shared/corpora "
            f"({f['pool']['curated_bytes'] / 2**20:.1f} MiB of curated Parquet). Load average {load[0]:.1f} at the start, "
            f"{load[1]:.1f} at the end (above 2 the 2-core machine was shared: read the speedups as indicative). "
            "`local`'s CPU seconds and peak RSS are the driver's: its workers are forked by the forkserver, whose "
            "children the measurement does not reach (a worker holds one shard and, for scoring, the proxy).\n\n"
            + "\n".join(rows))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "child":
        child(*sys.argv[2:])
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
