"""The prepared GPU check (issue 16): `bash bench/gpu_check.sh` or `python -m bench.run gpu`.

On a machine with an NVIDIA GPU it measures, in a few minutes (sized to stay under 8 minutes with torch.compile's
warm-ups included):

1. a population of 64 default proxies (``ProxiesConfig()``) trained together for a fixed number of steps vs the
   same proxy trained alone, in fp32, tf32 and bf16 (on a GPU): tokens/s per member over the sweep's wall time
   for both (64 members one after another take 64 times one member's time, so each trains at the lone model's
   tokens/s divided by 64) and the ratio (goal >= 8x);
2. 4 members trained from the same seeds on real text (the embedded example corpus, staged and tokenized with
   curamix's own code) in fp32, tf32 (on a GPU) and bf16 autocast (``proxies.train.precision``): the final
   per-domain validation losses and their relative differences to fp32 (goal: within 1%);
3. ``difficulty_scores``' code (``proxies.scoring.score_stage``: streaming, token budget, device placement) on
   10,000 documents, at the default budget and at "all", in fp32 and bf16, and the embedder of the
   ``embeddings`` asset on 10,000 documents: documents/s;
4. the spherical k-means of ``concept_clusters`` on 200,000 random unit vectors (128 dims, k = 100): seconds.

Without a GPU the same steps run on the CPU at smaller sizes and the figures say so (``mode``); ``--quick`` makes
them tiny (a tiny model, no compilation), which is what CI runs (tests/test_bench_gpu.py). Timings synchronize the
device before reading the clock.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "default" / "spec.yaml"


@dataclass(frozen=True)
class Sizes:
    members: int            # population size
    population_steps: int   # timed steps (after a warm-up that includes compilation)
    sequential_steps: int   # timed steps of the lone member
    precision_members: int
    precision_steps: int
    score_docs: int
    embed_docs: int
    kmeans_vectors: int
    kmeans_dim: int
    kmeans_k: int
    tiny_model: bool        # a tiny proxy without torch.compile (CI), else the default proxy config
    vocab_size: int
    pool_docs: int | None = None   # documents kept per domain of the example corpus (None = all)
    pool_chars: int | None = None  # texts cut to this many characters (None = whole)


SIZES = {
    "cuda": Sizes(64, 60, 300, 4, 60, 10_000, 10_000, 200_000, 128, 100, False, 4096),
    "cpu": Sizes(4, 8, 8, 4, 30, 1_000, 2_000, 20_000, 128, 100, False, 4096),
    "quick": Sizes(3, 2, 2, 2, 3, 40, 40, 600, 16, 8, True, 512, pool_docs=60, pool_chars=3000),
}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _config(sizes: Sizes, device, **train):
    from pipeline.config.proxies import ModelConfig, ProxiesConfig, TrainConfig

    config = ProxiesConfig()
    if sizes.tiny_model:
        config = ProxiesConfig(model=ModelConfig(n_layers=1, d_model=32, n_heads=2, d_ff=64, seq_len=32),
                               train=TrainConfig(batch_size=4, warmup_steps=1, eval_tokens=512, compile=False))
    return dataclasses.replace(config, train=dataclasses.replace(config.train, device=device.type, **train))


def _stage_example(work: Path, sizes: Sizes):
    """The embedded example corpus staged with curamix's staging code, then cut to the sizes' pool as the stage
    'pool'; returns (spec, root)."""
    import polars as pl
    import yaml

    from pipeline.spec import load_spec
    from pipeline.staging import stage_domain
    from pipeline.store import DataRoot

    body = yaml.safe_load(EXAMPLE.read_text())
    body = {"name": "gpu-check", "seed": body["seed"], "data_root": str(work / "data"),
            "sources": [s | {"path": str(EXAMPLE.parent / s["path"])} for s in body["sources"]],
            "staging": body.get("staging", {})}
    (work / "spec.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    spec = load_spec(work / "spec.yaml")
    root = DataRoot(spec.data_root)
    for domain in spec.domains:
        stage_domain(spec, domain, root=root)
        frame = root.scan("documents", [domain]).collect()
        if sizes.pool_docs is not None:
            frame = frame.head(sizes.pool_docs)
        if sizes.pool_chars is not None:
            frame = frame.with_columns(pl.col("text").str.slice(0, sizes.pool_chars))
        with root.write_domain("pool", domain) as tmp:
            (tmp / "data").mkdir()
            frame.write_parquet(tmp / "data" / "part-0.parquet")
    return spec, root


def _documents_stage(root, texts: list[str], n: int) -> str:
    """A one-domain stage of ``n`` documents cycled from ``texts`` (distinct ids), for throughput."""
    import polars as pl

    picked = [texts[i % len(texts)] for i in range(n)]
    frame = pl.DataFrame({"doc_id": [f"doc{i:07d}" for i in range(n)], "text": picked})
    with root.write_domain("gpu_docs", "all") as tmp:
        (tmp / "data").mkdir()
        frame.write_parquet(tmp / "data" / "part-0.parquet")
    return "gpu_docs"


def _precisions(device, *, quick: bool) -> tuple[str, ...]:
    """tf32 exists on CUDA only (elsewhere it is plain fp32), so the CPU runs measure fp32 and bf16."""
    return ("fp32", "tf32", "bf16") if device.type == "cuda" and not quick else ("fp32", "bf16")


def population_vs_sequential(sizes: Sizes, device) -> dict:
    """A sweep of ``members`` proxies trained as one population vs one after another, for each precision.

    Over the sweep's wall time a member of the population trains at (population tokens/s) / members; trained one
    after another each member trains at the lone model's tokens/s but only a 1/members share of the time, so the
    ratio of the two per-member rates is population tokens/s over the lone model's tokens/s."""
    import torch

    from bench.bench_proxies import measure, random_bins

    bins = random_bins(tokens=50_000 if sizes.tiny_model else 200_000)
    by_precision = {}
    for precision in ("fp32",) if sizes.tiny_model else _precisions(device, quick=False):
        torch.compiler.reset()  # each precision compiles afresh: torch caps recompilations of one function at 8
        config = _config(sizes, device, precision=precision)
        pop = measure(config, sizes.members, sizes.population_steps, device, bins)
        alone = measure(config, 1, sizes.sequential_steps, device, bins)
        by_precision[precision] = {
            "population": pop | {"tokens_per_s_per_member": round(pop["tokens_per_s"] / sizes.members, 1)},
            "sequential": alone | {"tokens_per_s_per_member": round(alone["tokens_per_s"] / sizes.members, 1)},
            "population_speedup_per_member": round(pop["tokens_per_s"] / alone["tokens_per_s"], 3)}
        print(f"[gpu check] population {precision}: {by_precision[precision]['population_speedup_per_member']}x",
              flush=True)
    fp32 = by_precision["fp32"]
    return {**fp32, "by_precision": by_precision, "goal_population_speedup": 8.0,
            "config": {"model": dataclasses.asdict(config.model), "batch_size": config.train.batch_size,
                       "compile": config.train.compile}}


def precision_losses(sizes: Sizes, device, spec, root, tokenizer, work: Path) -> dict:
    import torch

    from proxies.bins import Bins, build_bins
    from proxies.population import train_population

    build_bins(root, "pool", spec.domains, work / "bins", tokenizer=tokenizer, tokenizer_sha256="gpu-check",
               validation_fraction=0.1, seed=0)
    bins = Bins.open(work / "bins")
    mixtures = np.random.default_rng(0).dirichlet(np.ones(len(bins.domains)), size=sizes.precision_members)
    seeds = list(range(sizes.precision_members))
    finals, seconds = {}, {}
    precisions = _precisions(device, quick=sizes.tiny_model)
    for precision in precisions:
        torch.compiler.reset()
        config = _config(sizes, device, precision=precision, steps=sizes.precision_steps)
        started = time.perf_counter()
        table = train_population(bins, mixtures, config, seeds)
        _sync(device)
        seconds[precision] = round(time.perf_counter() - started, 1)
        finals[precision] = table.filter(table["step"] == table["step"].max()).sort("member")
    columns = [f"loss_{d}" for d in bins.domains]
    losses = {p: finals[p].select(columns).to_numpy() for p in precisions}
    relative = {p: np.abs(losses[p] - losses["fp32"]) / np.abs(losses["fp32"]) for p in precisions if p != "fp32"}
    out = {"members": sizes.precision_members, "steps": sizes.precision_steps, "seconds": seconds,
           "domains": bins.domains,
           **{p: {d: [round(v, 5) for v in losses[p][:, j]] for j, d in enumerate(bins.domains)} for p in precisions}}
    for p, rel in relative.items():
        prefix = "" if p == "bf16" else f"{p}_"  # bf16's figures keep their first names
        out |= {f"{prefix}relative_difference_by_domain": {d: _sig(rel[:, j].max()) for j, d in enumerate(bins.domains)},
                f"{prefix}max_relative_difference": _sig(rel.max()),
                f"{prefix}mean_relative_difference": _sig(rel.mean()),
                f"{prefix}within_goal": bool(rel.max() <= 0.01)}
    return out | {"goal_max_relative_difference": 0.01}


def _sig(value: float) -> float:
    """Four significant digits (a tiny difference must not round to zero)."""
    return float(f"{float(value):.4g}")


def scoring_throughput(sizes: Sizes, device, root, stage: str, tokenizer, work: Path) -> dict:
    import polars as pl
    from scipy.stats import spearmanr

    from proxies.model import PopulationLM
    from proxies.scoring import ScoreBudget, score_stage
    from proxies.tokenizer import eot_id

    config = _config(sizes, device)
    model = PopulationLM(config.model, tokenizer.get_vocab_size(), 1)
    model.init_members([0])
    model = model.to(device)
    default = ScoreBudget.of(config.score_tokens, config.score_mode, seed=0)
    out: dict = {"docs": sizes.score_docs, "default_budget": {"tokens": config.score_tokens, "mode": config.score_mode}}
    losses = {}
    for name, budget, precision in (("default_fp32", default, "fp32"), ("default_bf16", default, "bf16"),
                                    ("all_fp32", ScoreBudget(), "fp32")):
        path = work / f"scores_{name}.parquet"
        _sync(device)
        started = time.perf_counter()
        summary = score_stage(root, stage, ["all"], model=model, tokenizer=tokenizer, bos=eot_id(tokenizer), out=path,
                              budget=budget, batch_tokens=config.score_batch_tokens, device=device, precision=precision)
        _sync(device)
        seconds = time.perf_counter() - started
        losses[name] = pl.read_parquet(path)["loss"].to_numpy()
        out[name] = {"seconds": round(seconds, 2), "docs_per_s": round(sizes.score_docs / seconds, 1),
                     "tokens_scored": summary["all"]["tokens_scored"]}
    finite = np.isfinite(losses["default_fp32"]) & np.isfinite(losses["default_bf16"])
    out["spearman_bf16_vs_fp32"] = round(float(spearmanr(losses["default_fp32"][finite],
                                                         losses["default_bf16"][finite]).statistic), 5)
    out["model_device"] = str(next(model.parameters()).device)
    return out


def embedding_throughput(sizes: Sizes, texts: list[str]) -> dict:
    from pipeline.config.pruning import EmbeddingConfig
    from pipeline.pruning.embed import make_embedder

    config = EmbeddingConfig()
    docs = [texts[i % len(texts)] for i in range(sizes.embed_docs)]
    embedder = make_embedder(config, seed=0)
    started = time.perf_counter()
    embedder.fit(docs[: config.fit_sample])
    fit = time.perf_counter() - started
    started = time.perf_counter()
    rows = 0
    for s in range(0, len(docs), config.batch_size):
        rows += len(embedder.transform(docs[s : s + config.batch_size]))
    seconds = time.perf_counter() - started
    return {"docs": rows, "kind": config.kind, "dim": embedder.dim, "fit_seconds": round(fit, 2),
            "transform_seconds": round(seconds, 2), "docs_per_s": round(rows / seconds, 1),
            "docs_per_s_with_fit": round(rows / (seconds + fit), 1)}


def kmeans_time(sizes: Sizes, device) -> dict:
    from pipeline.pruning.clusters import spherical_kmeans

    x = np.random.default_rng(0).standard_normal((sizes.kmeans_vectors, sizes.kmeans_dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    result = spherical_kmeans(x, sizes.kmeans_k, seed=0, device=device)  # returns host arrays: synchronized
    return {"vectors": sizes.kmeans_vectors, "dim": sizes.kmeans_dim, "k": result.k, "iterations": result.iterations,
            "seconds": round(result.seconds, 3), "mean_cos_to_centroid": round(result.objective, 5),
            "empty_clusters": int((np.bincount(result.labels, minlength=result.k) == 0).sum())}


def run(quick: bool = False, *, device: str = "auto") -> dict:
    import torch

    from proxies.population import pick_device
    from proxies.tokenizer import train_tokenizer

    dev = pick_device(device)
    mode = "quick" if quick else dev.type
    sizes = SIZES[mode]
    figures: dict = {
        "mode": mode, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "note": ("NVIDIA GPU: the issue's sizes" if dev.type == "cuda" and not quick else
                 "no GPU in use: the same steps at smaller sizes (these are not GPU figures)"),
        "sizes": dataclasses.asdict(sizes), "threads": torch.get_num_threads(), "phase_seconds": {}, "errors": {},
    }
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        def phase(name, fn, *args, needed=False):
            # A device run is one short lease: a phase that breaks is written down with its traceback and the
            # others still run, so one run says everything it can. Only the set-up phases are needed by the rest.
            started = time.perf_counter()
            try:
                result = fn(*args)
            except Exception:
                if needed:
                    raise
                figures["errors"][name] = traceback.format_exc(limit=8)
                print(f"[gpu check] {name} failed:\n{figures['errors'][name]}", flush=True)
                return None
            finally:
                figures["phase_seconds"][name] = round(time.perf_counter() - started, 1)
            print(f"[gpu check] {name}: {figures['phase_seconds'][name]} s", flush=True)
            return result

        spec, root = phase("stage_example", _stage_example, work, sizes, needed=True)
        texts = root.scan("pool").select("text").collect()["text"].to_list()
        tokenizer = phase("tokenizer", lambda: train_tokenizer(
            [t[:20_000] for t in texts[:: max(1, len(texts) // 2000)]], vocab_size=sizes.vocab_size), needed=True)
        figures |= phase("population", population_vs_sequential, sizes, dev) or {}
        figures["precision"] = phase("precision", precision_losses, sizes, dev, spec, root, tokenizer, work)
        stage = _documents_stage(root, texts, sizes.score_docs)
        figures["scoring"] = phase("scoring", scoring_throughput, sizes, dev, root, stage, tokenizer, work)
        figures["embedding"] = phase("embedding", embedding_throughput, sizes, texts)
        figures["kmeans"] = phase("kmeans", kmeans_time, sizes, dev)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def summarize(f: dict) -> str:
    if f.get("errors"):
        return (f"Mode **{f['mode']}** on {f['device']}: phases that failed: {', '.join(sorted(f['errors']))} "
                "(tracebacks under `errors`); the others' figures are below.")
    p, s, e, k, q = f["population"], f["scoring"], f["embedding"], f["kmeans"], f["precision"]
    speedups = ", ".join(f"{name} {r['population_speedup_per_member']}x" for name, r in f["by_precision"].items())
    tf32 = (f"; tf32 vs fp32 **{q['tf32_max_relative_difference']:.2%}**" if "tf32_max_relative_difference" in q
            else "")
    return (f"Mode **{f['mode']}** on {f['device']} ({f['note']}). A sweep of {p['members']} proxies as one "
            f"population: {p['tokens_per_s_per_member']:,.0f} tokens/s per member over the sweep's time vs "
            f"{f['sequential']['tokens_per_s_per_member']:,.0f} trained one after another: "
            f"**{f['population_speedup_per_member']}x** in fp32 (goal >= 8x on a GPU; by precision: {speedups}). "
            f"After {q['steps']} steps, {q['members']} members: max relative difference of the final per-domain "
            f"losses bf16 vs fp32 **{q['max_relative_difference']:.2%}**{tf32} (goal <= 1%). difficulty_scores' code: "
            f"{s['default_fp32']['docs_per_s']:,.0f} docs/s at the default budget ({s['all_fp32']['docs_per_s']:,.0f} "
            f"scoring every token; bf16 {s['default_bf16']['docs_per_s']:,.0f}, Spearman vs fp32 "
            f"{s['spearman_bf16_vs_fp32']}); embedder ({e['kind']}): {e['docs_per_s']:,.0f} docs/s after a "
            f"{e['fit_seconds']} s fit; k-means of {k['vectors']:,} x {k['dim']} vectors, k = {k['k']}: {k['seconds']} s.")
