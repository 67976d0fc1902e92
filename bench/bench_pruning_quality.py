"""Does pruned data train better than a random subset of the same size? Real text, real proxies, three encoders.

Workload (sized to finish in about 45 minutes on 2 shared CPU cores, one torch thread): six domains of
``../shared/corpora/raw`` (dialogue, math = GSM8K, science = SciTLDR, web_ugc = movie reviews, law = SPDX licence
texts, code = Go stdlib), ``DOCS`` documents each (seeded sample), texts cut at ``MAX_CHARS`` characters. Each
domain's documents are split by document (seeded hash) into 80% train pool / 10% validation / 10% held out.

1. A byte-level BPE (vocab 2048) and a reference proxy trained on the whole train pool (natural mixture). The
   reference proxy scores every train document (mean loss over its first ``SCORE_TOKENS`` tokens) for SeTa.
2. Three embeddings of the train pool: ``hashing`` (curamix's default, hashed TF-IDF + SVD, 128 dims), ``minilm``
   (all-MiniLM-L6-v2, 384 dims, pipeline.pruning.minilm) and ``proxy`` (D4: mean-pooled final hidden states of the
   reference proxy, 128 dims). Spherical k-means per embedding.
3. Tuning, on the validation split only (one seed, ``TUNE_STEPS`` steps): the number of clusters k (with DBP),
   DBP's temperature tau and neighbour count l, SSL's hard/easy, SemDeDup+DBP's SemDeDup share, SeTa's window;
   each knob is chosen by mean validation loss over domains. The held-out slice is never read while tuning.
4. The measurement: random, SemDeDup, DBP, SemDeDup+DBP, SSL prototypes (each with each embedding) and SeTa at 50%
   of the pool per domain, ``SEEDS`` paired seeds (a seed sets the pruning seed and the proxy's init and data
   order together), each proxy trained with the same budget (``STEPS`` steps of ``BATCH`` x ``SEQ`` tokens, the
   domain weights = the full pool's natural token shares), all members as one batched population. Scored on the
   held-out slice of every domain and on ../shared/eval target sets (LAMBADA, GSM8K, ARC-Easy, HumanEval).
   SemDeDup alone keeps 50% through its epsilon (found by bisection), as the SemDeDup paper sizes its subsets.

Reported: mean held-out loss over domains per method and embedding, per domain, per target set, and the paired
difference to random per seed with its standard error. The held-out set is the natural distribution of the pool,
which favours a random subset by construction.
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
FILES = {
    "dialogue_sgd.jsonl.gz": "dialogue",
    "math_gsm8k_train.jsonl": "math",
    "science_scitldr_abstracts.jsonl.zst": "science",
    "web_movie_reviews.jsonl.zst": "web_ugc",
    "law_spdx_license_texts.jsonl.zst": "law",
    "code_go_stdlib.parquet": "code",
}
# Sized for the machine as it was (2 cores, load average ~16 from six other jobs; one proxy step of one member
# took ~0.7 s with d_model 128): a smaller proxy (d_model 64) and fewer steps than the 3-seed run of 2026-11-22
# (d_model 128, 250 steps), so that 34 tuning proxies and 70 measured proxies fit in about 45 minutes.
DOCS, MAX_CHARS = 240, 3000
VOCAB, STEPS, TUNE_STEPS, BATCH, SEQ = 2048, 64, 40, 8, 128
D_MODEL, D_FF, EVAL_TOKENS = 64, 192, 8192
SCORE_TOKENS = 256
SEEDS = 5
EVAL_DOCS = 200
EMBEDDINGS = ["hashing", "minilm", "proxy"]
CLUSTER_METHODS = ["semdedup", "dbp", "semdedup+dbp", "ssl"]
# The grids tried on the validation split (the README lists them).
GRID = {
    "k": [12, 24, 48],
    "dbp.tau": [0.1, 0.5, 2.0],
    "dbp.l": [5, 20],
    "ssl.keep": ["hard", "easy"],
    "semdedup+dbp.semdedup_share": [0.1, 0.25],
    "seta.window_start": [None, 0, 2],
}
DEFAULT_K, DEFAULT_TAU, DEFAULT_L = 24, 0.5, 20
RAW = REPO / "bench" / "results" / "raw" / "pruning_quality.json"  # not *.json of results/: bench.run renders those


def _build_pool(work: Path, docs: int) -> tuple:
    """Stage the files, sample ``docs`` per domain, cut texts, split train / validation / held-out."""
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
    val: dict[str, list[str]] = {}
    for domain in spec.domains:
        stage_domain(spec, domain, root=root)
        frame = root.scan("documents", [domain]).collect().unique("doc_id", keep="first", maintain_order=True)
        frame = frame[np.random.default_rng(0).permutation(frame.height)[:docs]]
        frame = frame.with_columns(pl.col("text").str.slice(0, MAX_CHARS)).with_columns(
            n_chars=pl.col("text").str.len_chars().cast(pl.Int64), n_bytes=pl.col("text").str.len_bytes().cast(pl.Int64))
        order = split_order(frame["doc_id"].to_list(), seed=0)
        n_out = n_validation(frame.height, 0.1, 1)
        held[domain] = frame[order[:n_out]]["text"].to_list()
        val[domain] = frame[order[n_out:2 * n_out]]["text"].to_list()
        train = frame[order[2 * n_out:]]
        out = root.domain_dir(INPUT_STAGE, domain) / "data"
        out.mkdir(parents=True)
        train.write_parquet(out / "part-00000.parquet")
    return spec, root, held, val


def _proxies_config(steps: int):
    from pipeline.config.proxies import ModelConfig, ProxiesConfig, TrainConfig

    return ProxiesConfig(
        model=ModelConfig(n_layers=2, d_model=D_MODEL, n_heads=4, d_ff=D_FF, seq_len=SEQ),
        train=TrainConfig(steps=steps, batch_size=BATCH, lr=3e-3, warmup_steps=max(1, steps // 10),
                          eval_tokens=EVAL_TOKENS, compile=False, device="auto"),
    )


def _tokens(tokenizer, texts: list[str], eot: int) -> np.ndarray:
    from proxies.tokenizer import encode_batch

    parts = [np.append(ids, eot) for s in range(0, len(texts), 256) for ids in encode_batch(tokenizer, texts[s:s + 256])]
    return np.concatenate(parts).astype(np.uint16) if parts else np.zeros(0, np.uint16)


def _clusters(doc_ids, domains, x: np.ndarray, k: int):
    from pipeline.pruning.clusters import StoredClusters, spherical_kmeans

    res = spherical_kmeans(x, k, seed=2)
    return StoredClusters(doc_ids=doc_ids, domains=domains, labels=res.labels, distance=res.distance,
                          centroids=res.centroids)


def _epsilon_for(pool, x: np.ndarray, remove: float) -> float:
    """SemDeDup's epsilon that removes ``remove`` of the pool (bisection; more epsilon removes more)."""
    from pipeline.pruning.semdedup import order_key, semdedup

    key = order_key("hardest_first", distance=pool.distance, seed=0)
    lo, hi = 0.0, 2.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if semdedup(x, pool.labels, epsilon=mid, key=key).remove.mean() < remove:
            lo = mid
        else:
            hi = mid
    return hi


class Cell:
    """One (method, embedding, settings) way of pruning; ``keep(seed)`` gives its kept mask."""

    def __init__(self, name: str, method: str, pool, x, losses, settings: dict):
        self.name, self.method, self.pool, self.x, self.losses, self.settings = name, method, pool, x, losses, settings

    def keep(self, seed: int) -> np.ndarray:
        from pipeline.config.pruning import DBPConfig, PruningConfig, SemDeDupConfig, SeTaConfig, SSLConfig
        from pipeline.pruning.run import decide

        s = self.settings
        cfg = PruningConfig(method=self.method, target_fraction=0.5, scope="domain",
                            semdedup=SemDeDupConfig(epsilon=s.get("epsilon", 0.05)),
                            dbp=DBPConfig(tau=s.get("tau", DEFAULT_TAU), l=s.get("l", DEFAULT_L)),
                            ssl=SSLConfig(keep=s.get("keep", "hard")),
                            seta=SeTaConfig(window_start=s.get("window_start")))
        return decide(cfg, self.pool, seed=3 + seed, embeddings=self.x,
                      losses=self.losses if self.method == "seta" else None).keep


def _train(cells: list[Cell], seeds: list[int], *, steps: int, doc_tokens, pool_domains, domains, natural, eot,
           targets: dict[str, np.ndarray]) -> dict[tuple[str, int], dict]:
    """One batched population, one member per (cell, seed); final target losses per member."""
    import polars as pl

    from proxies.bins import Bins
    from proxies.population import train_population

    members = [(c, s) for s in seeds for c in cells]
    columns, train = [], {}
    for m, (cell, seed) in enumerate(members):
        keep = cell.keep(seed)
        for d in domains:
            parts = [np.append(doc_tokens[i], eot) for i in np.flatnonzero(keep) if pool_domains[i] == d]
            train[f"m{m}|{d}"] = np.concatenate(parts).astype(np.uint16)
            columns.append(f"m{m}|{d}")
    mixtures = np.zeros((len(members), len(columns)))
    for m in range(len(members)):
        mixtures[m, m * len(domains):(m + 1) * len(domains)] = natural
    bins = Bins(vocab_size=VOCAB, eot=eot, domains=columns, train=train,
                val={c: np.zeros(0, np.uint16) for c in columns}, targets=targets)
    results = train_population(bins, mixtures, _proxies_config(steps), seed=[s for _, s in members],
                               run_ids=[f"m{m}" for m in range(len(members))])
    last = results.filter(pl.col("step") == results["step"].max())
    out = {}
    for row in last.to_dicts():
        cell, seed = members[int(row["run_id"][1:])]
        out[cell.name, seed] = {t: float(row[f"loss_target_{t}"]) for t in targets}
    return out


def _mean_over(losses: dict, prefix: str) -> float:
    return float(np.mean([v for k, v in losses.items() if k.startswith(prefix)]))


def _tune(make, doc_tokens, pool_domains, domains, natural, eot, val_targets, steps, log) -> tuple[dict, dict]:
    """Choose every knob on the validation split; returns (chosen settings per cell name, the trials)."""
    trials: dict = {}

    def score(cells: list[Cell]) -> dict[str, float]:
        got = _train(cells, [0], steps=steps, doc_tokens=doc_tokens, pool_domains=pool_domains, domains=domains,
                     natural=natural, eot=eot, targets=val_targets)
        out = {c.name: round(_mean_over(got[c.name, 0], "val:"), 4) for c in cells}
        trials.update(out)
        log(f"tuning: {out}")
        return out

    # Round 1: the number of clusters, per embedding, with DBP at its defaults; random as the reference.
    r1 = [make("random", "random", None, {})] + [
        make(f"dbp/{e}/k={k}", "dbp", (e, k), {}) for e in EMBEDDINGS for k in GRID["k"]]
    s1 = score(r1)
    best_k = {e: min(GRID["k"], key=lambda k: s1[f"dbp/{e}/k={k}"]) for e in EMBEDDINGS}
    # Round 2: the other knobs, one at a time around the defaults, at each embedding's chosen k.
    r2 = []
    for e in EMBEDDINGS:
        k = best_k[e]
        r2 += [make(f"dbp/{e}/tau={t}", "dbp", (e, k), {"tau": t}) for t in GRID["dbp.tau"] if t != DEFAULT_TAU]
        r2 += [make(f"dbp/{e}/l={l}", "dbp", (e, k), {"l": l}) for l in GRID["dbp.l"] if l != DEFAULT_L]
        r2 += [make(f"ssl/{e}/keep={v}", "ssl", (e, k), {"keep": v}) for v in GRID["ssl.keep"]]
        r2 += [make(f"semdedup+dbp/{e}/share={f}", "semdedup+dbp", (e, k), {"share": f})
               for f in GRID["semdedup+dbp.semdedup_share"]]
    r2 += [make(f"seta/window_start={w}", "seta", None, {"window_start": w}) for w in GRID["seta.window_start"]]
    s2 = score(r2)
    s = s1 | s2
    chosen = {"random": {}}
    for e in EMBEDDINGS:
        k = best_k[e]
        # Ties (the knob changed nothing) keep the default.
        tau = min(GRID["dbp.tau"], key=lambda t: (s[f"dbp/{e}/k={k}"], 0) if t == DEFAULT_TAU else (s[f"dbp/{e}/tau={t}"], 1))
        lv = min(GRID["dbp.l"], key=lambda l: (s[f"dbp/{e}/k={k}"], 0) if l == DEFAULT_L else (s[f"dbp/{e}/l={l}"], 1))
        share = min(GRID["semdedup+dbp.semdedup_share"], key=lambda f: s[f"semdedup+dbp/{e}/share={f}"])
        chosen[f"dbp/{e}"] = {"k": k, "tau": tau, "l": lv}
        chosen[f"semdedup+dbp/{e}"] = {"k": k, "tau": tau, "l": lv, "share": share}
        chosen[f"ssl/{e}"] = {"k": k, "keep": min(GRID["ssl.keep"], key=lambda v: s[f"ssl/{e}/keep={v}"])}
        chosen[f"semdedup/{e}"] = {"k": k, "share": 0.5}
    chosen["seta"] = {"window_start": min(GRID["seta.window_start"], key=lambda w: s[f"seta/window_start={w}"])}
    return chosen, trials


def run(quick: bool = False) -> dict:
    import torch

    from pipeline.pruning import INPUT_STAGE
    from pipeline.pruning.embed import HashingSVDEmbedder
    from pipeline.pruning.minilm import MiniLMEmbedder
    from proxies.bins import Bins
    from proxies.embedding import ProxyEmbedder
    from proxies.model import PopulationLM
    from proxies.population import train_population
    from proxies.scoring import score_documents
    from proxies.tokenizer import encode_batch, eot_id, train_tokenizer
    from bench.bench_proxy_sweep import target_texts

    # One thread: on this shared 2-core machine two torch threads per process were measured 12x slower per step
    # than one, from oversubscription.
    torch.set_num_threads(1)
    docs, steps, tune_steps = (60, 10, 8) if quick else (DOCS, STEPS, TUNE_STEPS)
    seeds = list(range(2 if quick else SEEDS))
    timings: dict[str, float] = {}
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="bench_pruning_quality_"))
    try:
        t = time.perf_counter()
        spec, root, held, val = _build_pool(work, docs)
        domains = sorted(held)
        frame = root.scan(INPUT_STAGE).select("doc_id", "domain", "text").collect()
        doc_ids, pool_domains, texts = frame["doc_id"].to_list(), frame["domain"].to_list(), frame["text"].to_list()
        timings["pool_s"] = time.perf_counter() - t

        t = time.perf_counter()
        tokenizer = train_tokenizer(texts, vocab_size=VOCAB)
        eot = eot_id(tokenizer)
        doc_tokens = encode_batch(tokenizer, texts)
        held_t = {f"held:{d}": _tokens(tokenizer, held[d], eot) for d in domains}
        val_t = {f"val:{d}": _tokens(tokenizer, val[d], eot) for d in domains}
        eval_t = {f"eval:{name}": _tokens(tokenizer, tx, eot) for name, tx in target_texts(EVAL_DOCS)}
        full = {d: np.concatenate([np.append(doc_tokens[i], eot) for i in range(len(texts)) if pool_domains[i] == d])
                for d in domains}
        natural = np.array([len(full[d]) for d in domains], dtype=np.float64)
        natural /= natural.sum()
        timings["tokenizer_s"] = time.perf_counter() - t

        # Reference proxy on the whole pool: the "full" line, SeTa's scorer and the D4 encoder.
        t = time.perf_counter()
        kept_model = {}
        ref_bins = Bins(vocab_size=VOCAB, eot=eot, domains=domains, train=full,
                        val={d: np.zeros(0, np.uint16) for d in domains}, targets=held_t | eval_t)
        ref = train_population(ref_bins, natural[None, :], _proxies_config(steps), seed=0,
                               keep=lambda i, model, j: kept_model.setdefault("m", PopulationLM.from_members(
                                   model.config, model.vocab_size, [model.member_state(j)])))
        ref_row = ref.filter(ref["step"] == ref["step"].max()).to_dicts()[0]
        full_losses = {k[len("loss_target_"):]: float(v) for k, v in ref_row.items() if k.startswith("loss_target_")}
        losses, _ = score_documents(kept_model["m"], [d[:SCORE_TOKENS] for d in doc_tokens], bos=eot)
        losses = np.nan_to_num(losses, nan=float(np.nanmean(losses)))
        timings["reference_train_and_score_s"] = time.perf_counter() - t

        vectors, embed_s = {}, {}
        for name in EMBEDDINGS:
            t = time.perf_counter()
            if name == "hashing":
                vectors[name] = HashingSVDEmbedder(dim=128, seed=1).fit(texts).transform(texts)
            elif name == "minilm":
                vectors[name] = MiniLMEmbedder(max_chars=MAX_CHARS).transform(texts)
            else:
                vectors[name] = ProxyEmbedder(model=kept_model["m"], tokenizer=tokenizer,
                                              max_tokens=SCORE_TOKENS).transform(texts)
            embed_s[name] = round(time.perf_counter() - t, 1)
            log(f"embedded with {name} in {embed_s[name]} s")
        timings["embed_s"] = sum(embed_s.values())

        pools: dict = {}
        epsilons: dict = {}

        def make(name: str, method: str, where, settings: dict) -> Cell:
            if where is None:   # random and SeTa read no embedding
                return Cell(name, method, pools.get(("hashing", DEFAULT_K)) or get_pool("hashing", DEFAULT_K),
                            vectors["hashing"], losses, settings)
            emb, k = where
            pool = get_pool(emb, k)
            settings = dict(settings)
            if "share" in settings:   # SemDeDup's epsilon from the share of the pool it should remove
                key = (emb, k, settings["share"])
                if key not in epsilons:
                    epsilons[key] = _epsilon_for(pool, vectors[emb], settings["share"])
                settings["epsilon"] = epsilons[key]
            return Cell(name, method, pool, vectors[emb], losses, settings)

        def get_pool(emb: str, k: int):
            if (emb, k) not in pools:
                pools[emb, k] = _clusters(doc_ids, pool_domains, vectors[emb], k if not quick else max(2, k // 6))
            return pools[emb, k]

        common = dict(doc_tokens=doc_tokens, pool_domains=pool_domains, domains=domains, natural=natural, eot=eot)
        t = time.perf_counter()
        chosen, trials = _tune(make, steps=tune_steps, val_targets=val_t, log=log, **common)
        timings["tuning_s"] = time.perf_counter() - t
        log(f"chosen: {chosen}")

        cells = [make("random", "random", None, {}), make("seta", "seta", None, chosen["seta"])]
        for method in CLUSTER_METHODS:
            for e in EMBEDDINGS:
                s = chosen[f"{method}/{e}"]
                cells.append(make(f"{method}/{e}", method, (e, s["k"]), {k: v for k, v in s.items() if k != "k"}))
        kept_fraction = {c.name: round(float(c.keep(0).mean()), 4) for c in cells}
        t = time.perf_counter()
        got = _train(cells, seeds, steps=steps, targets=held_t | eval_t, **common)
        timings["measurement_train_s"] = time.perf_counter() - t

        raw = {
            "workload": {"domains": domains, "docs_per_domain": docs, "max_chars": MAX_CHARS,
                         "train_docs": len(doc_ids), "validation_docs": sum(len(v) for v in val.values()),
                         "held_out_docs": sum(len(v) for v in held.values()),
                         "eval_sets": {k[5:]: int(len(v)) for k, v in eval_t.items()},
                         "train_pool_tokens": int(sum(len(v) for v in full.values()))},
            "proxy": {"d_model": D_MODEL, "layers": 2, "eval_tokens_per_set": EVAL_TOKENS, "vocab": VOCAB,
                      "seq_len": SEQ, "batch": BATCH, "steps": steps, "tune_steps": tune_steps,
                      "tokens_per_member": steps * BATCH * SEQ, "seeds": seeds,
                      "mixture": dict(zip(domains, natural.round(4).tolist()))},
            "grid": GRID, "tuning_validation_loss": trials, "chosen": chosen,
            "cells": {c.name: {"kept_fraction": kept_fraction[c.name],
                               "settings": {k: (round(v, 4) if isinstance(v, float) else v)
                                            for k, v in (chosen.get(c.name, {}) | c.settings).items()}} for c in cells},
            "losses": {f"{name}@{seed}": v for (name, seed), v in got.items()},
            "full_pool_losses": full_losses,
            "embedding_seconds": embed_s,
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
        }
        # The raw losses first: the table below can be rebuilt from them (``--from-raw``) without retraining.
        RAW.parent.mkdir(exist_ok=True)
        RAW.write_text(json.dumps(raw, indent=1) + "\n")
        return tabulate(raw)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def tabulate(raw: dict) -> dict:
    """Per cell: mean held-out loss over domains, per domain and eval set, paired difference to random ± SE."""
    seeds, domains = raw["proxy"]["seeds"], raw["workload"]["domains"]
    got = {tuple(k.rsplit("@", 1)): v for k, v in raw["losses"].items()}
    got = {(name, int(seed)): v for (name, seed), v in got.items()}
    evals = [f"eval:{n}" for n in raw["workload"]["eval_sets"]]

    def paired(name: str, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        mine = np.array([_mean_over(got[name, s], prefix) for s in seeds])
        return mine, mine - np.array([_mean_over(got["random", s], prefix) for s in seeds])

    def se(diff: np.ndarray) -> float:
        return float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")

    table = {}
    for name, cell in raw["cells"].items():
        mine, diff = paired(name, "held:")
        _, eval_diff = paired(name, "eval:")
        err = se(diff)
        table[name] = {
            "mean_held_out": round(float(mine.mean()), 4),
            "per_seed_mean": [round(float(v), 4) for v in mine],
            "vs_random": round(float(diff.mean()), 4), "vs_random_stderr": round(err, 4),
            "vs_random_z": round(float(diff.mean() / err), 2) if err > 0 else None,
            "seeds_better": int((diff < 0).sum()),
            "per_domain": {d: round(float(np.mean([got[name, s][f"held:{d}"] for s in seeds])), 4) for d in domains},
            "eval_sets": {k[5:]: round(float(np.mean([got[name, s][k] for s in seeds])), 4) for k in evals},
            "eval_mean_vs_random": round(float(eval_diff.mean()), 4),
            "eval_mean_vs_random_stderr": round(se(eval_diff), 4),
        } | cell
    winners = [n for n, v in table.items() if n != "random" and v["vs_random_z"] is not None
               and v["vs_random"] < 0 and -v["vs_random"] > 2 * v["vs_random_stderr"]]
    full = raw["full_pool_losses"]
    return {k: raw[k] for k in ("workload", "proxy", "grid", "tuning_validation_loss", "chosen")} | {
        "full_pool": {"mean_held_out": round(_mean_over(full, "held:"), 4),
                      "eval_sets": {k[5:]: round(v, 4) for k, v in full.items() if k.startswith("eval:")}},
        "held_out_loss": table,
        "beats_random_by_2_stderr": winners,
        "embedding_seconds": raw["embedding_seconds"],
        "timings_s": raw["timings_s"],
        "machine_note": "2-core machine shared with six other jobs (load average ~16) while this ran",
    }


def summarize(f: dict) -> str:
    rows = sorted(f["held_out_loss"].items(), key=lambda kv: kv[1]["mean_held_out"])
    parts = [f"{name} {v['mean_held_out']:.4f} ({v['vs_random']:+.4f} ± {v['vs_random_stderr']:.4f}, "
             f"{v['seeds_better']}/{len(v['per_seed_mean'])} seeds)" for name, v in rows]
    w = f["workload"]
    winners = f["beats_random_by_2_stderr"]
    return (f"Mean held-out loss over {len(w['domains'])} domains (lower is better; paired difference to random ± its "
            f"standard error), proxies trained on 50% of a {w['train_docs']}-document pool with "
            f"{f['proxy']['tokens_per_member']} tokens each, {len(f['proxy']['seeds'])} paired seeds: "
            + "; ".join(parts) + ". Beats random by more than 2 standard errors: "
            + (", ".join(winners) if winners else "none") + ".")


if __name__ == "__main__":
    figures = tabulate(json.loads(RAW.read_text())) if "--from-raw" in sys.argv else run(quick="--quick" in sys.argv)
    print(json.dumps(figures, indent=1))
    print(summarize(figures))
