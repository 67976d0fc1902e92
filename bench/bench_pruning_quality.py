"""Does pruned data train better than a random subset of the same size? Real text, real proxies.

Workload (sized for ~10 minutes on 2 shared CPU cores, one torch thread): six domains of ``../shared/corpora/raw``
(dialogue, math = GSM8K, science = SciTLDR, web_ugc = movie reviews, law = SPDX licence texts,
code = Go stdlib), ``DOCS`` documents each (seeded sample), texts cut at ``MAX_CHARS`` characters.
Each domain's documents are split by document into 90% train pool / 10% held out (seeded hash).

1. Embeddings (hashing-SVD, 128 dims) and spherical k-means (k = ``K``) on the train pool, with
   curamix's own pruning stage code (``pipeline.pruning``).
2. A byte-level BPE (vocab 2048, proxies.tokenizer) trained on the train pool.
3. Reference proxy: trained on the whole train pool (natural mixture), ``STEPS`` steps; its held-out
   losses are the "full" line; it scores every train document (mean loss over its first
   ``SCORE_TOKENS`` tokens, proxies.scoring) for SeTa.
4. Prune the train pool to 50% per domain with DBP, SemDeDup+DBP, SeTa (static, centred window 3 of
   5 groups), SSL prototypes (hard) and random.
5. Train one proxy per pruned set with the same token budget (same steps, batch, context, seed and
   the same domain weights = the full pool's natural token shares), all five as one batched
   population (proxies.population): each member's mixture puts weight only on its own method's copy
   of the domains. Report held-out loss per domain and the mean over domains.

``SEEDS`` seeds: for each, every method prunes with that seed and its proxy trains with it (same
initialization and data order across methods), so differences to random are paired by seed and reported
with their standard error. The held-out set is the natural distribution of the pool, which favours a random
subset by construction.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO.parent / "shared" / "corpora"
FILES = {
    "dialogue_sgd.jsonl.gz": "dialogue",
    "math_gsm8k_train.jsonl": "math",
    "science_scitldr_abstracts.jsonl.zst": "science",
    "web_movie_reviews.jsonl.zst": "web_ugc",
    "law_spdx_license_texts.jsonl.zst": "law",
    "code_go_stdlib.parquet": "code",
}
DOCS, MAX_CHARS, K = 300, 3000, 24
VOCAB, STEPS, BATCH, SEQ = 2048, 250, 8, 128
SCORE_TOKENS = 256
SEEDS = 3  # training (and pruning) seeds; method differences are paired by seed
METHODS = ["random", "dbp", "semdedup+dbp", "seta", "ssl"]


def _build_pool(work: Path, docs: int) -> tuple:
    """Stage the files, sample ``docs`` per domain, cut texts, split train/held-out; train pool as 'curated'."""
    import polars as pl

    from bench.bench_pruning import _write_spec
    from pipeline.pruning import INPUT_STAGE
    from pipeline.spec import load_spec
    from pipeline.staging import stage_domain
    from pipeline.store import DataRoot
    from proxies.bins import n_validation, split_order

    spec = load_spec(_write_spec(work, list(FILES)))
    root = DataRoot(spec.data_root)
    held: dict[str, list[str]] = {}
    for domain in spec.domains:
        stage_domain(spec, domain, root=root)
        frame = root.scan("documents", [domain]).collect().unique("doc_id", keep="first", maintain_order=True)
        frame = frame[np.random.default_rng(0).permutation(frame.height)[:docs]]
        frame = frame.with_columns(pl.col("text").str.slice(0, MAX_CHARS)).with_columns(
            n_chars=pl.col("text").str.len_chars().cast(pl.Int64), n_bytes=pl.col("text").str.len_bytes().cast(pl.Int64))
        order = split_order(frame["doc_id"].to_list(), seed=0)
        n_val = n_validation(frame.height, 0.1, 1)
        held[domain] = frame[order[:n_val]]["text"].to_list()
        train = frame[order[n_val:]]
        out = root.domain_dir(INPUT_STAGE, domain) / "data"
        out.mkdir(parents=True)
        train.write_parquet(out / "part-00000.parquet")
    return spec, root, held


def _proxies_config(steps: int):
    from pipeline.config.proxies import ModelConfig, ProxiesConfig, TrainConfig

    return ProxiesConfig(
        model=ModelConfig(n_layers=2, d_model=128, n_heads=4, d_ff=384, seq_len=SEQ),
        train=TrainConfig(steps=steps, batch_size=BATCH, lr=2e-3, warmup_steps=max(1, steps // 10),
                          eval_tokens=1 << 20, compile=False, device="auto"),
    )


def _tokens(tokenizer, texts: list[str], eot: int) -> np.ndarray:
    from proxies.tokenizer import encode_batch

    parts = []
    for s in range(0, len(texts), 256):
        for ids in encode_batch(tokenizer, texts[s:s + 256]):
            parts.append(np.append(ids, eot))
    return np.concatenate(parts).astype(np.uint16) if parts else np.zeros(0, np.uint16)


def run(quick: bool = False) -> dict:
    import polars as pl

    from pipeline.config.pruning import ClusterConfig, PruningConfig, SemDeDupConfig
    from pipeline.pruning import INPUT_STAGE
    from pipeline.pruning.clusters import cluster_stage, load_clusters
    from pipeline.pruning.embed import embed_stage, load_embeddings
    from pipeline.pruning.run import decide
    from proxies.bins import Bins
    from proxies.population import train_population
    from proxies.scoring import score_documents
    from proxies.tokenizer import encode_batch, eot_id, train_tokenizer

    import torch

    # One thread: on this shared 2-core machine two torch threads per process were measured 12x
    # slower per step (0.31 s vs 3.6 s for one member) than one, from oversubscription.
    torch.set_num_threads(1)
    docs, steps = (60, 20) if quick else (DOCS, STEPS)
    seeds = list(range(1 if quick else SEEDS))
    timings: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="bench_pruning_quality_"))
    try:
        t = time.perf_counter()
        spec, root, held = _build_pool(work, docs)
        domains = sorted(held)
        timings["pool_s"] = time.perf_counter() - t

        t = time.perf_counter()
        pcfg = PruningConfig(clusters=ClusterConfig(k=K if not quick else 6))
        embed_stage(root, pcfg.embedding, seed=1, input_stage=INPUT_STAGE)
        cluster_stage(root, pcfg.clusters, seed=2)
        pool = load_clusters(root)
        _, _, embeddings = load_embeddings(root)
        timings["embed_cluster_s"] = time.perf_counter() - t

        t = time.perf_counter()
        texts_by_id = dict(root.scan(INPUT_STAGE).select("doc_id", "text").collect().iter_rows())
        train_texts = [texts_by_id[i] for i in pool.doc_ids]
        tokenizer = train_tokenizer(train_texts, vocab_size=VOCAB)
        eot = eot_id(tokenizer)
        doc_tokens = encode_batch(tokenizer, train_texts)
        held_tokens = {d: _tokens(tokenizer, held[d], eot) for d in domains}
        timings["tokenizer_s"] = time.perf_counter() - t

        def train_arrays(keep: np.ndarray) -> dict[str, np.ndarray]:
            out = {}
            for d in domains:
                parts = [np.append(doc_tokens[i], eot) for i in np.flatnonzero(keep) if pool.domains[i] == d]
                out[d] = np.concatenate(parts).astype(np.uint16)
            return out

        config = _proxies_config(steps)
        full = train_arrays(np.ones(len(pool.doc_ids), dtype=bool))
        natural = np.array([len(full[d]) for d in domains], dtype=np.float64)
        natural /= natural.sum()

        # Reference proxy on the whole pool: the "full" line, and the scorer for SeTa.
        t = time.perf_counter()
        kept_model = {}
        ref_bins = Bins(vocab_size=VOCAB, eot=eot, domains=domains, train=full,
                        val={d: np.zeros(0, np.uint16) for d in domains}, targets=held_tokens)
        ref = train_population(ref_bins, natural[None, :], config, seed=0,
                               keep=lambda i, model, j: kept_model.setdefault("m", model))
        timings["reference_train_s"] = time.perf_counter() - t
        t = time.perf_counter()
        losses, _ = score_documents(kept_model["m"], [d[:SCORE_TOKENS] for d in doc_tokens], bos=eot)
        losses = np.nan_to_num(losses, nan=float(np.nanmean(losses)))
        timings["score_s"] = time.perf_counter() - t

        # Prune with each method (curamix's decide(), per-domain scope, 50%), once per seed: the pruning
        # seed (random subsets, SeTa's thinning) and the training seed change together.
        t = time.perf_counter()
        kept: dict[tuple[str, int], np.ndarray] = {}
        pruning_info = {}
        for seed in seeds:
            for method in METHODS:
                cfg = PruningConfig(method=method, target_fraction=0.5, scope="domain", clusters=pcfg.clusters,
                                    semdedup=SemDeDupConfig(epsilon=0.05))
                dec = decide(cfg, pool, seed=3 + seed, embeddings=embeddings,
                             losses=losses if method == "seta" else None)
                kept[method, seed] = dec.keep
                pruning_info.setdefault(method, {
                    "kept_docs": int(dec.keep.sum()),
                    "kept_tokens": int(sum(len(doc_tokens[i]) + 1 for i in np.flatnonzero(dec.keep))),
                    "semdedup_removed": dec.report.get("semdedup", {}).get("removed"),
                })
        timings["prune_s"] = time.perf_counter() - t

        # One batched population: member (method, seed) trains only on its own copy of the domains.
        t = time.perf_counter()
        members = [(m, s) for s in seeds for m in METHODS]
        columns, train = [], {}
        for method, seed in members:
            arrays = train_arrays(kept[method, seed])
            for d in domains:
                columns.append(f"{method}@{seed}|{d}")
                train[f"{method}@{seed}|{d}"] = arrays[d]
        mixtures = np.zeros((len(members), len(columns)))
        for m in range(len(members)):
            mixtures[m, m * len(domains):(m + 1) * len(domains)] = natural
        bins = Bins(vocab_size=VOCAB, eot=eot, domains=columns, train=train,
                    val={c: np.zeros(0, np.uint16) for c in columns}, targets=held_tokens)
        results = train_population(bins, mixtures, config, seed=[s for _, s in members],
                                   run_ids=[f"{m}@{s}" for m, s in members])
        timings["population_train_s"] = time.perf_counter() - t

        def held_losses(row: dict) -> dict:
            per = {d: round(row[f"loss_target_{d}"], 4) for d in domains}
            return {"mean": round(float(np.mean(list(per.values()))), 4), "per_domain": per,
                    "train_loss_last": round(row["train_loss"], 4)}

        last = {row["run_id"]: row for row in results.filter(pl.col("step") == results["step"].max()).to_dicts()}
        table = {"full (no pruning)": held_losses(ref.filter(pl.col("step") == ref["step"].max()).to_dicts()[0])}
        for method in METHODS:
            per_seed = [held_losses(last[f"{method}@{s}"]) for s in seeds]
            table[method] = {
                "mean": round(float(np.mean([p["mean"] for p in per_seed])), 4),
                "per_seed_mean": [p["mean"] for p in per_seed],
                "per_domain": {d: round(float(np.mean([p["per_domain"][d] for p in per_seed])), 4) for d in domains},
            } | pruning_info[method]
        rnd = table["random"]
        for name, v in table.items():
            v["vs_random"] = round(v["mean"] - rnd["mean"], 4)
            if "per_seed_mean" in v and len(seeds) > 1:
                diff = np.array(v["per_seed_mean"]) - np.array(rnd["per_seed_mean"])
                v["vs_random_paired"] = {"per_seed": diff.round(4).tolist(),
                                         "stderr": round(float(diff.std(ddof=1) / np.sqrt(len(diff))), 4),
                                         "seeds_better": int((diff < 0).sum())}
        return {
            "workload": {"domains": domains, "docs_per_domain": docs, "max_chars": MAX_CHARS,
                         "train_docs": len(pool.doc_ids), "held_out_docs": sum(len(v) for v in held.values()),
                         "held_out_tokens": {d: int(len(v)) for d, v in held_tokens.items()},
                         "train_pool_tokens": int(sum(len(v) for v in full.values())), "k": pool.centroids.shape[0]},
            "proxy": {"d_model": 128, "layers": 2, "vocab": VOCAB, "seq_len": SEQ, "batch": BATCH, "steps": steps,
                      "tokens_per_member": steps * BATCH * SEQ, "seeds": seeds, "mixture": dict(zip(domains, natural.round(4).tolist()))},
            "held_out_loss": table,
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarize(f: dict) -> str:
    rows = sorted(f["held_out_loss"].items(), key=lambda kv: kv[1]["mean"])
    def vs(v):
        p = v.get("vs_random_paired")
        return f"{v['vs_random']:+.4f}" + (f" ± {p['stderr']:.4f}, {p['seeds_better']}/{len(p['per_seed'])} seeds" if p else "")

    parts = [f"{name} {v['mean']:.4f} ({vs(v)})" for name, v in rows]
    w = f["workload"]
    return (f"Mean held-out loss over {len(w['domains'])} domains (lower is better; difference to random), "
            f"proxies trained on 50% of a {w['train_docs']}-document pool with {f['proxy']['tokens_per_member']} "
            f"tokens each, {len(f['proxy']['seeds'])} paired seed(s): " + "; ".join(parts) + ".")


if __name__ == "__main__":
    figures = run(quick="--quick" in sys.argv)
    print(json.dumps(figures, indent=1))
    print(summarize(figures))
