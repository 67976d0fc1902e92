"""Does a mixture chosen with tiny proxies still win when a larger model trains on it? (RegMix's rank invariance.)

On the real corpora (../shared/corpora, the 10 domains of bench/bench_mixing_e2e.py, whose staging, tokenizer,
token bins and sweep code this reuses; work folder ``CURAMIX_MIXING_E2E_DIR``, default /tmp/curamix_mixing_e2e):
1. a RegMix sweep of ``N_SWEEP`` proxies (cached);
2. the mixture RegMix chooses with the default ``regressor: auto`` (the spec's own `mixing` section);
3. the chosen mixture and uniform, natural and temperature (T=2) trained with the spec's
   ``mixing.validation.model`` on ``validation.tokens`` (``larger_scale_validation``: at least 8x the proxies'
   non-embedding parameters; first, as it is the goal's measurement) and at proxy scale (``validation_runs``,
   the proxies' steps), ``SEEDS`` paired seeds each (same initialization and data stream per seed, only the
   mixture differs);
4. per scale: mean held-out loss on the test slice no mixer has read, paired per-seed differences of the chosen
   mixture against each baseline (mean, standard error, seeds better), and per-domain losses, so that where the
   proxies' choice does not carry over, the domains that flip are named.

Every phase's figures are written to ``<work>/scale_figures.json`` as soon as they exist, so a run cut short
still leaves its numbers. Every phase's results are cached in the work folder (sweep by parts, the choice, each
mixture's runs at each scale), so the work can be spread over processes with ``CURAMIX_MIXING_SCALE_ONLY``
(``sweep:0-8``, ``choose``, ``large:uniform``, ``large:regmix@0`` for one seed, ``proxy:natural``); the plain
command gathers what is cached and trains the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import yaml

from bench.bench_mixing_e2e import PROXIES, SWEEP_SAMPLER, _log, _spec_body, prepare_bins

# Sized for a 2-core machine shared with four other jobs (a proxy step ran 0.2-0.6 s there): 24 proxies of
# 100 steps (205k tokens), not bench_mixing_e2e's 64 of 200; on a quiet machine raise both.
N_SWEEP = 24
STEPS = 100
SEEDS = 3
# 4 layers at d_model 128 with a SwiGLU inner width of 320: 754,816 non-embedding parameters, 9.2x the proxies'
# 82,240 (2 layers, d_model 64, d_ff 128). Same context and batch, so the token budget is steps x 2,048.
LARGE_MODEL = {"n_layers": 4, "d_model": 128, "n_heads": 4, "d_ff": 320, "seq_len": 64}
# The larger model trains on the proxies' tokens (100 steps of 32 x 64): the CPU budget bounds it; more
# parameters would deserve more data.
LARGE_TOKENS = STEPS * 32 * 64
MIN_RATIO = 8.0
# Validation tokens per domain: the sweep's targets read the first 16k, the validation runs are scored on the
# next 16k (bench_mixing_e2e reads 32k + 32k; scoring cost as much as training here).
EVAL_TOKENS = 16384
QUICK = {"steps": 30, "n_sweep": 12, "large_steps": 40}
BASELINES = ["uniform", "natural", "temperature"]


def _scale_spec(work: Path, steps: int, large_tokens: int) -> Path:
    body = _spec_body(work, steps)
    body["mixing"]["regmix"] = {"num_samples": 1_000_000, "top_k": 100}  # regressor: auto, the default
    # Eager: on a loaded single thread, compiling three graphs (sweep, both validation models) costs minutes.
    body["proxies"]["train"]["compile"] = False
    body["proxies"]["train"]["eval_tokens"] = EVAL_TOKENS
    body["mixing"]["validation"] = {"enabled": True, "baselines": BASELINES, "seeds": SEEDS,
                                    "model": LARGE_MODEL, "tokens": large_tokens}
    path = work / "spec_scale.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def paired_table(val: dict, chosen: str, baselines: list[str]) -> dict:
    """The chosen mixture minus each baseline, seed by seed (negative: the chosen mixture is better)."""
    from mixers.report import paired_differences

    out = {}
    for b in baselines:
        d = np.array(paired_differences(val, chosen, b))
        out[f"vs_{b}"] = {"mean": float(d.mean()), "per_seed": d.tolist(),
                          "stderr": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None,
                          "seeds_better": int((d < 0).sum()), "seeds": len(d)}
    return out


def per_domain_gaps(val: dict, chosen: str, baselines: list[str]) -> dict:
    """Per domain, the chosen mixture's seed-averaged held-out loss minus each baseline's."""
    return {b: {d: val[chosen]["losses"][d] - val[b]["losses"][d] for d in val[chosen]["losses"]} for b in baselines}


def _cached(work: Path, scale: str, key: list, compute):
    """One scale's validation runs, kept in the work folder by what they depend on: the two scales can run in
    two processes at once, and a re-run after an interruption does not train them again."""
    from pipeline.store import atomic_file

    path = work / "scale_validation" / f"{scale}_{_digest(key)}.json"
    if path.exists():
        _log(f"{scale} scale: cached in {path}")
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(result, default=float))
    return result


def sweep_table(spec, root, bins, *, n_sweep: int, steps: int, parts: list[list[int]]):
    """The RegMix sweep's results: ``n_sweep`` mixtures from the sampler, one seed for all (members are
    independent: a part trained in another process, CURAMIX_MIXING_SCALE_ONLY=sweep:I-J, is the same as in one
    population); every part cached in the sweep's folder, members [I, J) of it."""
    import polars as pl

    from mixers.regmix import sample_mixtures
    from pipeline.store import atomic_file
    from proxies.population import train_population

    key = hashlib.sha256(json.dumps([PROXIES, SWEEP_SAMPLER, steps, EVAL_TOKENS], sort_keys=True).encode()).hexdigest()[:10]
    folder = root.root / "proxy_runs" / f"scale_sweep_{n_sweep}x{steps}_{key}"
    W = sample_mixtures(bins.prior(), n_sweep, seed=spec.seed_for("proxy_runs"), **SWEEP_SAMPLER)
    tables = []
    for i, j in parts:
        path = folder / f"members_{i}_{j}.parquet"
        if not path.exists():
            # Members already trained by other processes are read, the rest trained here.
            done = [pl.read_parquet(f) for f in sorted(folder.glob("members_*.parquet"))] if folder.exists() else []
            have = set().union(*[set(t["run_id"].to_list()) for t in done]) if done else set()
            todo = [m for m in range(i, j) if f"m{m}" not in have]
            if todo:
                _log(f"sweep: members {todo[0]}..{todo[-1]} ({len(todo)}) x {steps} steps")
                t = train_population(bins, W[todo], spec.proxies, spec.seed_for("proxy_runs") % 2**31,
                                     run_ids=[f"m{m}" for m in todo], progress=_log)
                path = folder / f"members_{todo[0]}_{todo[-1] + 1}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_file(path) as tmp:
                    t.write_parquet(tmp)
        tables = [pl.read_parquet(f) for f in sorted(folder.glob("members_*.parquet"))]
    table = pl.concat(tables, how="diagonal_relaxed").unique("run_id", keep="first", maintain_order=True)
    table = table.filter(pl.col("run_id").is_in([f"m{m}" for m in range(n_sweep)]))
    return table.sort(pl.col("run_id").str.slice(1).cast(pl.Int64))  # m0, m1, ...: the order one population gives


def _digest(key: list) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=float).encode()).hexdigest()[:12]


def _join_seeds(entries: list[dict]) -> dict:
    """One mixture's validation entries of one seed each, as the entry of all the seeds in that order."""
    losses = {d: float(np.mean([e["losses"][d] for e in entries])) for d in entries[0]["losses"]}
    return entries[0] | {"losses": losses, "average": float(np.mean(list(losses.values()))),
                         "per_seed_average": [x for e in entries for x in e["per_seed_average"]],
                         "seeds": [x for e in entries for x in e["seeds"]]}


def _merge(parts: list[dict]) -> dict:
    """Validation results of one mixture each, as one ``validation_runs`` result."""
    return {name: entry for part in parts for name, entry in part.items()}


def _save(work: Path, figures: dict) -> None:
    (work / "scale_figures.json").write_text(json.dumps(figures, indent=2, default=float))


def run(quick: bool = False) -> dict:
    import dataclasses

    from mixers.choose import choose_regmix, mixing_inputs
    from mixers.proxy_table import proxy_runs_from_table
    from mixers.stage import available_tokens, larger_scale_validation
    from pipeline.spec import load_spec
    from pipeline.store import DataRoot
    from proxies.online import validation_runs
    import polars as pl

    import torch

    # One thread: on a 2-core machine shared with other jobs, two OpenMP threads per process made a proxy
    # step ~30x slower (1.6 s vs 0.055 s, measured side by side); the figures are losses, not timings.
    torch.set_num_threads(1)
    work = Path(os.environ.get("CURAMIX_MIXING_E2E_DIR", "/tmp/curamix_mixing_e2e"))
    work.mkdir(parents=True, exist_ok=True)
    steps = QUICK["steps"] if quick else STEPS
    n_sweep = QUICK["n_sweep"] if quick else N_SWEEP
    large_tokens = QUICK["large_steps"] * 32 * 64 if quick else LARGE_TOKENS
    spec = load_spec(_scale_spec(work, steps, large_tokens))
    root = DataRoot(spec.data_root)
    figures: dict = {"steps": steps, "n_sweep": n_sweep, "seeds": SEEDS, "proxies": PROXIES,
                     "large_model": LARGE_MODEL, "large_tokens": large_tokens, "timings_s": {}}
    t0 = time.perf_counter()
    bins, meta = prepare_bins(spec, root, figures)
    only = os.environ.get("CURAMIX_MIXING_SCALE_ONLY")
    if only and only.startswith("sweep:"):
        part = [int(x) for x in only.split(":")[1].split("-")]
        sweep_table(spec, root, bins, n_sweep=n_sweep, steps=steps, parts=[part])
        return figures
    cfg = spec.mixing
    if quick:
        cfg = dataclasses.replace(cfg, regmix=dataclasses.replace(cfg.regmix, num_samples=100_000))
    inputs = mixing_inputs(available_tokens(meta), cfg, budget_tokens=spec.output.total_tokens,
                           max_epochs=spec.output.max_epochs)
    seed = spec.seed_for("mixing") % 2**31

    # Baselines do not depend on the sweep: their validation runs can start before it ends.
    baselines_only = bool(only) and only.split(":")[0] in ("large", "proxy") and "regmix" not in only
    if baselines_only:
        table = runs = None
    else:
        t = time.perf_counter()
        table = sweep_table(spec, root, bins, n_sweep=n_sweep, steps=steps, parts=[[0, n_sweep]])
        figures["timings_s"]["sweep"] = round(time.perf_counter() - t, 1)
        runs = proxy_runs_from_table(table, bins.domains)

    def choose() -> dict:
        t = time.perf_counter()
        out = choose_regmix(runs, inputs, cfg, seed=seed)
        regmix = {"regressor": cfg.regmix.regressor, "mixture": out.mixture, "predicted": out.predicted,
                  "heldout_spearman": out.quality["combined"]["spearman"],
                  "choices": {t_: c["chosen"] for t_, c in out.details["regressor_choice"].items()},
                  "cv_spearman": {t_: c["cv_spearman"] for t_, c in out.details["regressor_choice"].items()},
                  "notes": out.notes, "seconds": round(time.perf_counter() - t, 1)}
        candidates = {"regmix": [out.mixture[d] for d in bins.domains]}
        for name in BASELINES:
            mix = inputs.baselines([name], cfg.temperature)[name]
            candidates[name] = [mix[d] for d in bins.domains]
        return {"regmix": regmix, "candidates": candidates}

    # The choice is deterministic; kept in the work folder so that worker processes do not redo the search.
    if baselines_only:
        candidates = {}
        for name in BASELINES:
            mix = inputs.baselines([name], cfg.temperature)[name]
            candidates[name] = [mix[d] for d in bins.domains]
    else:
        chosen = _cached(work, "choice", [table.to_dicts(), seed, dataclasses.asdict(cfg.regmix)], choose)
        figures["regmix"], candidates = chosen["regmix"], chosen["candidates"]
        _log(f"regmix auto: {figures['regmix']['choices']}; {figures['regmix']['mixture']}")
    figures["mixtures"] = {n: dict(zip(bins.domains, v)) for n, v in candidates.items()}
    seeds = [seed + 1000 + i for i in range(SEEDS)]
    figures["validation_seeds"] = seeds
    _save(work, figures)
    if only == "choose":
        return figures

    # CURAMIX_MIXING_SCALE_ONLY="large:regmix,natural" (or "proxy:..."): train only those, into the cache, so
    # several processes can share the work; the run without it gathers the cache and trains what is missing.
    key = [seeds, steps, large_tokens, LARGE_MODEL, PROXIES]
    # The validation runs score the test slice (proxies.train.eval_tokens per domain, after the probe slice);
    # the per-domain evaluation the trainer also does at the end of training reads the probe slice and is not
    # used here, so it reads only 1,024 tokens (it cost as much as the training itself).
    test_tokens = spec.proxies.train.eval_tokens
    val_cfg = dataclasses.replace(spec.proxies, train=dataclasses.replace(spec.proxies.train, eval_tokens=1024))

    def proxy_scale(names):
        return _merge([_cached(work, "proxy", key + [n, candidates[n]], lambda n=n: validation_runs(
            bins, val_cfg, {n: candidates[n]}, steps=steps, seeds=seeds, eval_tokens=test_tokens, progress=_log)) for n in names])

    def large_run(n, run_seeds):
        return larger_scale_validation(bins, val_cfg, {n: candidates[n]}, cfg.validation, seeds=run_seeds,
                                       steps=steps, eval_tokens=test_tokens, progress=_log)

    def larger_scale(names):
        parts = []
        for n in names:
            # One process per seed (CURAMIX_MIXING_SCALE_ONLY=large:regmix@0): their caches are gathered here.
            per_seed = [work / "scale_validation" / f"large_{_digest(key + [n, candidates[n], s])}.json"
                        for s in seeds]
            if all(f.exists() for f in per_seed):
                one = [json.loads(f.read_text()) for f in per_seed]
                parts.append(one[0] | {"runs": {n: _join_seeds([o["runs"][n] for o in one])}})
                continue
            parts.append(_cached(work, "large", key + [n, candidates[n]], lambda n=n: large_run(n, seeds)))
        return parts[0] | {"runs": _merge([p["runs"] for p in parts])}

    if only:  # "large:..." or "proxy:..."
        scale, names = only.split(":")
        if "@" in names:  # one mixture, one seed
            n, i = names.split("@")
            _cached(work, "large", key + [n, candidates[n], seeds[int(i)]], lambda: large_run(n, [seeds[int(i)]]))
            return figures
        (proxy_scale if scale == "proxy" else larger_scale)(names.split(","))
        return figures
    t = time.perf_counter()
    large = larger_scale(list(candidates))
    figures["timings_s"]["larger_scale"] = round(time.perf_counter() - t, 1)
    figures["larger_scale"] = _scale_figures(large["runs"], cfg.validation.baselines)
    figures["larger_scale"] |= {"non_embedding_params": large["non_embedding_params"],
                                "proxy_non_embedding_params": large["proxy_non_embedding_params"],
                                "ratio_to_proxies": large["ratio_to_proxies"], "steps": large["steps"]}
    figures["ratio_at_least_8x"] = large["ratio_to_proxies"] >= MIN_RATIO
    ls = figures["larger_scale"]["paired"]
    figures["goal_beats_uniform_and_natural_every_seed_at_larger_scale"] = all(
        ls[f"vs_{b}"]["seeds_better"] == ls[f"vs_{b}"]["seeds"] for b in ("uniform", "natural"))
    _save(work, figures)
    t = time.perf_counter()
    _log(f"proxy scale: {len(candidates)} mixtures x {SEEDS} seeds x {steps} steps")
    small = proxy_scale(list(candidates))
    figures["timings_s"]["proxy_scale"] = round(time.perf_counter() - t, 1)
    figures["proxy_scale"] = _scale_figures(small, cfg.validation.baselines)
    _save(work, figures)

    figures["timings_s"]["total"] = round(time.perf_counter() - t0, 1)
    _save(work, figures)
    return figures


def _scale_figures(val: dict, baselines: list[str]) -> dict:
    return {"average": {n: v["average"] for n, v in val.items()},
            "per_seed_average": {n: v["per_seed_average"] for n, v in val.items()},
            "losses": {n: v["losses"] for n, v in val.items()},
            "tokens": val["regmix"]["tokens"], "steps": val["regmix"]["steps"],
            "paired": paired_table(val, "regmix", baselines),
            "per_domain_gap": per_domain_gaps(val, "regmix", baselines)}


def summarize(f: dict) -> str:
    def scale_line(name: str, s: dict) -> str:
        pairs = "; ".join(f"{k.removeprefix('vs_')} {v['mean']:+.4f} ± {v['stderr']:.4f} ({v['seeds_better']}/"
                          f"{v['seeds']} seeds better)" for k, v in s["paired"].items())
        avg = ", ".join(f"{n} {x:.4f}" for n, x in sorted(s["average"].items(), key=lambda kv: kv[1]))
        return f"{name}: mean held-out loss {avg}; RegMix (auto) minus baseline, paired: {pairs}."

    parts = [f"Real corpora, 10 domains, {f['n_sweep']} proxy runs x {f['steps']} steps, RegMix regressor "
             f"{f['regmix']['regressor']} (per target: {f['regmix']['choices']}); {f['seeds']} paired seeds."]
    if "proxy_scale" in f:
        parts.append(scale_line(f"Proxy scale ({f['proxy_scale']['tokens']:,} tokens)", f["proxy_scale"]))
    if "larger_scale" in f:
        ls = f["larger_scale"]
        parts.append(scale_line(f"Larger scale ({ls['non_embedding_params']:,} non-embedding parameters, "
                                f"{ls['ratio_to_proxies']:.1f}x the proxies' {ls['proxy_non_embedding_params']:,}; "
                                f"{ls['tokens']:,} tokens)", ls))
        parts.append("Goal (beats uniform and natural in every seed at the larger scale): "
                     + ("met." if f["goal_beats_uniform_and_natural_every_seed_at_larger_scale"] else "NOT met."))
    return " ".join(parts)


if __name__ == "__main__":
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2, default=float))
