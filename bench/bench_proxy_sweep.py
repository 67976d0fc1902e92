"""A proxy sweep over the real corpora of ../shared/corpora: >= 32 mixtures, timed, with seed noise.

Steps (all timed): read about ``tokens_per_domain`` tokens of text per domain from the 16 raw files (domain =
the file's suggested domain in SOURCES.json; long documents cut into pieces of at most 20,000 characters so that
a domain of a few books still has documents to hold out), write them as the "pruned" stage of a temporary data
root, train the BPE tokenizer, build the token bins (10% of documents held out; target sets from ../shared/eval),
sample ``n_mixtures`` RegMix candidates around the token prior, and train them as one population, plus
``noise_repeats`` of the same mixtures with a second seed.

Reported: wall time of each step against the 30-minute goal; for each validation set, the spread of final loss
across mixtures (std, max - min) and the run-to-run noise (mean |seed 0 - seed 1| over the repeated mixtures),
and their ratio; the Spearman correlation between a domain's weight and its loss across mixtures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from scipy.stats import spearmanr

from pipeline.config.proxies import ModelConfig, ProxiesConfig, TrainConfig
from pipeline.config.staging import SourceConfig
from pipeline.readers import read_source_file
from pipeline.schema import doc_id_for
from pipeline.store import DataRoot
from proxies.bins import Bins, build_bins
from proxies.population import train_population
from mixers.regmix.sampling import sample_sweep_mixtures
from proxies.tokenizer import file_sha256, sample_training_texts, save_tokenizer, train_tokenizer

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
CORPORA = SHARED / "corpora"
EVAL = SHARED / "eval"
PIECE_CHARS = 20_000
CHARS_PER_TOKEN = 3.5  # a rough guess to size the text budget; the bins report the real token counts
TARGETS = {"lambada": ("lambada_openai.jsonl", "{context} {continuation}"),
           "gsm8k": ("gsm8k.jsonl", "Question: {context}\nAnswer: {chain_of_thought}"),
           "arc_easy": ("arc_easy.jsonl", "{query}"),
           "human_eval": ("human_eval.jsonl", "{prompt}{canonical_solution}")}

SWEEP_PROXY = ProxiesConfig(
    model=ModelConfig(n_layers=2, d_model=128, n_heads=4, d_ff=384, seq_len=128),
    # 60 steps x 16 x 128 = 123k tokens per proxy: sized so that 36 proxies fit the 30-minute budget on a shared
    # 2-core machine (RegMix trains ~1B tokens per proxy on GPUs; the ranking of mixtures emerges much earlier).
    train=TrainConfig(steps=60, batch_size=16, lr=3e-3, warmup_steps=6, eval_tokens=4096, eval_at=[30]),
)


def _source(entry: dict) -> SourceConfig:
    name = entry["file"].split(".")[0]
    if entry["file"].endswith(".parquet"):
        return SourceConfig(name=name, path=entry["file"], domain=entry["suggested_domain"], text_field="content")
    if "gsm8k" in entry["file"]:
        return SourceConfig(name=name, path=entry["file"], domain="math",
                            template="Question: {question}\nAnswer: {answer}")
    return SourceConfig(name=name, path=entry["file"], domain=entry["suggested_domain"])


def read_domains(tokens_per_domain: int) -> dict[str, list[str]]:
    entries = json.loads((CORPORA / "SOURCES.json").read_text())
    by_domain: dict[str, list[dict]] = {}
    for e in entries:
        by_domain.setdefault(e["suggested_domain"], []).append(e)
    docs: dict[str, list[str]] = {}
    for domain, files in by_domain.items():
        budget = int(tokens_per_domain * CHARS_PER_TOKEN / len(files))
        texts: list[str] = []
        for entry in files:
            used = 0
            for row in read_source_file(_source(entry), CORPORA / "raw" / entry["file"]):
                if row.text is None or not row.text.strip():
                    continue
                for start in range(0, len(row.text), PIECE_CHARS):
                    piece = row.text[start : start + PIECE_CHARS]
                    texts.append(piece)
                    used += len(piece)
                    if used >= budget:
                        break
                if used >= budget:
                    break
        docs[domain] = list(dict.fromkeys(texts))  # exact duplicates would share a doc_id
    return docs


def write_pruned(root: DataRoot, docs: dict[str, list[str]]) -> None:
    for domain, texts in docs.items():
        n = len(texts)
        frame = pl.DataFrame({"doc_id": [doc_id_for(t) for t in texts], "domain": [domain] * n, "source": ["bench"] * n,
                              "source_file": ["bench"] * n, "source_row": list(range(n)), "text": texts,
                              "n_bytes": [len(t.encode()) for t in texts], "n_chars": [len(t) for t in texts]})
        with root.write_domain("pruned", domain) as tmp:
            (tmp / "data").mkdir()
            frame.write_parquet(tmp / "data" / "part-0.parquet")


def target_texts(max_docs: int = 400) -> list[tuple[str, list[str]]]:
    out = []
    for name, (file, template) in TARGETS.items():
        rows = pl.read_ndjson(EVAL / file, infer_schema_length=None).head(max_docs).to_dicts()
        out.append((name, [template.format_map(r) for r in rows]))
    return out


def analyse(results: pl.DataFrame, bins: Bins, n_mixtures: int) -> dict:
    final = results.filter(pl.col("step") == pl.col("step").max())
    first = final.filter(pl.col("seed") == 0).sort("member")
    second = final.filter(pl.col("seed") == 1).sort("member")
    cols = [f"loss_{d}" for d in bins.domains] + [f"loss_target_{t}" for t in bins.targets] + ["loss_val_mean"]
    report = {}
    for c in cols:
        values = first[c].to_numpy()
        pairs = first.head(second.height)[c].to_numpy(), second[c].to_numpy()
        noise = float(np.mean(np.abs(pairs[0] - pairs[1]))) if second.height else float("nan")
        entry = {"mean": round(float(values.mean()), 3), "std_across_mixtures": round(float(values.std()), 4),
                 "range_across_mixtures": round(float(values.max() - values.min()), 4),
                 "seed_noise_mean_abs_diff": round(noise, 4),
                 "spread_over_noise": round(float(values.std()) / noise, 1) if noise > 0 else None}
        if c.startswith("loss_") and c[5:] in bins.domains:
            rho = spearmanr(first[f"w_{c[5:]}"].to_numpy(), values).statistic
            entry["spearman_weight_vs_loss"] = round(float(rho), 3)
        report[c] = entry
    return report


def run(quick: bool = False, *, tokens_per_domain: int | None = None, n_mixtures: int | None = None,
        noise_repeats: int | None = None, steps: int | None = None, vocab_size: int = 4096) -> dict:
    tokens_per_domain = tokens_per_domain or (40_000 if quick else 200_000)
    n_mixtures = n_mixtures or (4 if quick else 32)
    noise_repeats = noise_repeats if noise_repeats is not None else (2 if quick else 4)
    config = SWEEP_PROXY
    if steps or quick:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps or 10, eval_at=[]))
    times: dict[str, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="curamix-sweep-") as tmp:
        root = DataRoot(Path(tmp) / "data")
        t = time.perf_counter()
        docs = read_domains(tokens_per_domain)
        write_pruned(root, docs)
        times["read_corpora_s"] = time.perf_counter() - t
        t = time.perf_counter()
        domains = list(docs)
        tok = train_tokenizer(sample_training_texts(root, "pruned", domains, max_bytes=20_000_000, seed=0),
                              vocab_size=vocab_size)
        sha = save_tokenizer(tok, Path(tmp) / "tokenizer.json")
        times["tokenizer_s"] = time.perf_counter() - t
        t = time.perf_counter()
        meta = build_bins(root, "pruned", domains, Path(tmp) / "bins", tokenizer=tok, tokenizer_sha256=sha,
                          validation_fraction=0.1, seed=0, targets=target_texts())
        bins = Bins.open(Path(tmp) / "bins")
        times["bins_s"] = time.perf_counter() - t
        mixtures, sampler = sample_sweep_mixtures(bins.prior(), n_mixtures, seed=0)
        all_mixtures = np.concatenate([mixtures, mixtures[:noise_repeats]])
        seeds = [0] * n_mixtures + [1] * noise_repeats
        t = time.perf_counter()
        results = train_population(bins, all_mixtures, config, seeds,
                                   progress=lambda m: print(f"[{time.perf_counter() - started:6.0f}s] {m}", flush=True))
        times["train_s"] = time.perf_counter() - t
        out_dir = Path(__file__).resolve().parent / "results"
        out_dir.mkdir(exist_ok=True)
        results.write_parquet(out_dir / "proxy_sweep_results.parquet")
    total = time.perf_counter() - started
    members = len(all_mixtures)
    tokens = members * config.train.steps * config.train.batch_size * config.model.seq_len
    return {
        "domains": {d: {k: meta["domains"][d][k] for k in ("train_tokens", "val_tokens", "train_docs", "val_docs")}
                    for d in domains},
        "targets": meta["targets"], "vocab_size": tok.get_vocab_size(), "sampler": sampler,
        "members": members, "mixtures": n_mixtures, "noise_repeats": noise_repeats,
        "proxy": dataclasses.asdict(config.model), "train": {k: getattr(config.train, k) for k in
                                                           ("steps", "batch_size", "lr", "compile", "eval_tokens")},
        "tokens_per_member": tokens // members, "train_tokens_per_s": round(tokens / times["train_s"], 1),
        "seconds": {k: round(v, 1) for k, v in times.items()} | {"total": round(total, 1)},
        "goal_total_seconds": 1800, "threads": torch.get_num_threads(),
        # CPU time this process got: on a shared machine, wall time overstates what the sweep needs.
        "cpu_seconds": round(time.process_time(), 1),
        "load_average_at_end": list(os.getloadavg()),
        "losses": analyse(results, bins, n_mixtures),
    }


def summarize(f: dict) -> str:
    losses = f["losses"]
    ratios = [v["spread_over_noise"] for k, v in losses.items() if v.get("spread_over_noise") is not None]
    rhos = [v["spearman_weight_vs_loss"] for v in losses.values() if "spearman_weight_vs_loss" in v]
    return (f"{f['members']} proxies ({f['mixtures']} mixtures + {f['noise_repeats']} repeated with a second seed) "
            f"over {len(f['domains'])} domains, {f['tokens_per_member']} training tokens each, finished in "
            f"{f['seconds']['total']:.0f} s (goal < 1800 s; training {f['seconds']['train_s']:.0f} s at "
            f"{f['train_tokens_per_s']:.0f} tokens/s; load average at the end {f['load_average_at_end'][0]:.1f} "
            f"on {f['threads']} threads; the process used {f.get('cpu_seconds', float('nan')):.0f} CPU-seconds). Loss spread across mixtures / seed noise: median "
            f"{np.median(ratios):.1f}x (min {min(ratios):.1f}x) over {len(ratios)} validation sets; Spearman(weight, "
            f"loss) per domain: median {np.median(rhos):.2f}.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--mixtures", type=int)
    args = parser.parse_args()
    figures = run(args.quick, steps=args.steps, n_mixtures=args.mixtures)
    print(json.dumps(figures, indent=2))
    print(summarize(figures))
