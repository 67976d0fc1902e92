"""The `mixture` stage for a spec: read token bins and proxy runs, choose, validate, write ``<root>/mixture/``.

Inputs under the data root: ``token_bins/meta.json`` (per-domain token counts; the bins themselves for Aioli
and the validation runs) and ``proxy_runs/**/*.parquet`` (the proxies' results tables, every sweep).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from mixers.aioli import AioliParams, plan_rounds, run_aioli
from mixers.baselines import BASELINES, baseline_mixture
from mixers.choose import (MixingInputs, MixtureOutcome, choose_baseline, choose_regmix, mixing_inputs, project,
                           write_outcome)
from mixers.proxy_table import proxy_runs_from_table
from pipeline.layout import Layout


class MixingInputError(RuntimeError):
    """An upstream asset the chosen method needs is missing."""


def available_tokens(meta: dict) -> dict[str, float]:
    """Tokens each domain holds: its train + validation tokens in the bins, scaled up by the share of
    documents the bins dropped when ``max_train_tokens_per_domain`` capped them (tokens per document assumed
    the same for the dropped ones)."""
    out = {}
    # In the spec's domain order (meta.json's mappings are key-sorted): mixtures are vectors in this
    # order wherever they meet the bins (Aioli's trainer, the validation runs).
    for d in meta.get("domain_order") or meta["domains"]:
        m = meta["domains"][d]
        tokens = float(m["train_tokens"] + m["val_tokens"])
        docs = m["train_docs"] + m["val_docs"]
        dropped = m.get("train_docs_over_cap", 0)
        out[d] = tokens * (docs + dropped) / docs if docs and dropped else tokens
    return out


def read_proxy_table(root: Path, sweeps: list[str] | None = None) -> pl.DataFrame:
    """Every sweep's results table (only the sweeps named, when given: a sweep removed from the spec
    leaves its folder behind, and its runs must not feed the regression)."""
    base = Layout.at(root).proxy_runs
    if sweeps:
        files = [base / s / "results.parquet" for s in sweeps if (base / s / "results.parquet").exists()]
    else:
        files = sorted(p for p in base.rglob("*.parquet") if ".tmp-" not in str(p))
    frames = [pl.read_parquet(f) for f in files]
    frames = [f for f in frames if "run_id" in f.columns and any(c.startswith("w_") for c in f.columns)]
    if not frames:
        raise MixingInputError(f"no proxy-run results under {base}: materialize `proxy_runs` first")
    return pl.concat(frames, how="diagonal_relaxed")


def open_bins(root: Path):
    from proxies.bins import Bins

    path = Layout.at(root).token_bins
    if not (path / "meta.json").exists():
        raise MixingInputError(f"no token bins at {path}: materialize `token_bins` first")
    return Bins.open(path)


def choose_aioli(bins, proxies_cfg, inputs: MixingInputs, cfg, *, seed: int,
                 progress: Callable[[str], None] | None = None) -> MixtureOutcome:
    from proxies.online import ProxyMixtureTrainer

    a = cfg.aioli
    total = a.total_steps or proxies_cfg.train.steps
    prior = None
    if a.prior != "none":
        mix = baseline_mixture(a.prior, inputs.available, budget=inputs.budget, max_epochs=inputs.max_epochs,
                               temperature=cfg.temperature)
        prior = tuple(mix[d] for d in bins.domains)
    params = AioliParams(total_steps=total, update_steps=a.update_steps, lp_rounds=a.lp_rounds, lp_steps=a.lp_steps,
                         one_hot_factor=a.one_hot_factor, eta=a.eta, ema=a.ema, prior_mixture=prior,
                         prior_steps=a.prior_steps, init=a.init, seed=seed)
    trainer = ProxyMixtureTrainer(bins, proxies_cfg, seed=seed, total_steps=total, eval_tokens=a.eval_tokens)
    if progress:
        rounds = plan_rounds(params.total_steps - params.prior_steps, params.update_steps)
        progress(f"aioli: {total} steps in {len(rounds)} rounds")
    result = run_aioli(trainer, len(bins.domains), params)
    chosen = result.mixture if a.output == "final" else result.average_mixture
    online = dict(zip(bins.domains, trainer.test_losses().tolist()))
    baselines = inputs.baselines(["uniform", "natural"], cfg.temperature)
    details = {"params": dataclasses.asdict(params), "steps_trained": result.steps_trained,
               "probe_steps": sum(s.steps for s in result.schedule if s.kind == "probe"),
               "evaluations": trainer.evaluations, "output": a.output,
               "online_run_test_losses": online, "online_run_test_average": float(np.mean(list(online.values()))),
               "A_last": result.history[-1]["A"] if result.history else None, "seed": seed}
    return MixtureOutcome("aioli", project(dict(zip(bins.domains, chosen.tolist())), inputs), inputs, baselines,
                          details, schedule=[dataclasses.asdict(s) for s in result.schedule])


def aioli_online_validation(bins, proxies_cfg, inputs: MixingInputs, cfg, *, steps: int, seeds: list[int],
                            progress: Callable[[str], None] | None = None) -> dict:
    """Aioli's own outcome: the model it trained online. One Aioli run per validation seed, with the steps
    (hence tokens), seeds and test slice of the static validation runs, so the two compare pair by pair.

    Returns the entry ``validation_runs`` returns for a mixture, plus each run's final mixture."""
    a = dataclasses.replace(cfg.aioli, total_steps=int(steps))
    run_cfg = dataclasses.replace(cfg, aioli=a)
    per_seed, finals = [], []
    for s in seeds:
        out = choose_aioli(bins, proxies_cfg, inputs, run_cfg, seed=int(s), progress=progress)
        per_seed.append(out.details["online_run_test_losses"])
        finals.append(out.mixture)
    losses = {d: float(np.mean([p[d] for p in per_seed])) for d in bins.domains}
    tokens = int(steps) * proxies_cfg.train.batch_size * proxies_cfg.model.seq_len
    return {"losses": losses, "average": float(np.mean(list(losses.values()))),
            "per_seed_average": [float(np.mean(list(p.values()))) for p in per_seed], "tokens": tokens,
            "steps": int(steps), "seeds": [int(s) for s in seeds], "final_mixtures": finals, "online": True}


def larger_scale_validation(bins, proxies_cfg, candidates: dict, v, *, seeds: list[int], steps: int,
                            eval_tokens: int | None = None,
                            progress: Callable[[str], None] | None = None) -> dict:
    """The same mixtures and seeds trained with ``v.model`` on ``v.tokens`` tokens: does the choice made with
    small proxies still hold for a larger model? Returns ``{"runs": validation_runs(...), "model": ...,
    "non_embedding_params": ..., "ratio_to_proxies": ...}``."""
    from proxies.online import validation_runs
    from proxies.model import non_embedding_params

    cfg = dataclasses.replace(proxies_cfg, model=v.model)
    per_step = proxies_cfg.train.batch_size * v.model.seq_len
    large_steps = max(1, int(v.tokens // per_step)) if v.tokens else steps
    big, small = non_embedding_params(v.model), non_embedding_params(proxies_cfg.model)
    if progress:
        progress(f"validation at a larger scale: {big:,} non-embedding parameters ({big / small:.1f}x the "
                 f"proxies'), {large_steps} steps")
    runs = validation_runs(bins, cfg, candidates, steps=large_steps, seeds=seeds, eval_tokens=eval_tokens,
                           progress=progress)
    return {"runs": runs, "model": dataclasses.asdict(v.model), "non_embedding_params": big,
            "proxy_non_embedding_params": small, "ratio_to_proxies": big / small, "steps": large_steps}


def run_mixing(spec, *, progress: Callable[[str], None] | None = None) -> dict:
    """Materialize the mixture for ``spec``; returns the ``mixture.json`` payload."""
    root = Path(spec.data_root)
    cfg = spec.mixing
    meta_path = Layout.at(root).token_bins / "meta.json"
    if not meta_path.exists():
        raise MixingInputError(f"no token bins at {meta_path.parent}: materialize `token_bins` first")
    available = available_tokens(json.loads(meta_path.read_text()))
    inputs = mixing_inputs(available, cfg, budget_tokens=spec.output.total_tokens, max_epochs=spec.output.max_epochs)
    seed = spec.seed_for("mixing") % (2**31)
    bins = None
    if cfg.method == "regmix":
        sweeps = [s.name for s in getattr(spec.proxies, "sweeps", [])]
        runs = proxy_runs_from_table(read_proxy_table(root, sweeps), inputs.domains)
        if progress:
            progress(f"regmix: {len(runs.run_ids)} proxy runs, targets {sorted(runs.losses)}")
        outcome = choose_regmix(runs, inputs, cfg, seed=seed)
    elif cfg.method == "aioli":
        bins = open_bins(root)
        outcome = choose_aioli(bins, spec.proxies, inputs, cfg, seed=seed, progress=progress)
    elif cfg.method in BASELINES:
        outcome = choose_baseline(cfg.method, inputs, cfg)
    else:  # pragma: no cover - the spec's Literal refuses it first
        raise ValueError(f"unknown mixing method {cfg.method!r}")
    v = cfg.validation
    if v.enabled and spec.proxies.enabled:
        from proxies.online import validation_runs

        bins = bins or open_bins(root)
        # Vectors in the bins' domain order: that is how the trainer reads them.
        candidates = {outcome.method: [outcome.mixture[d] for d in bins.domains]}
        for name in v.baselines:
            if name != outcome.method:
                mix = baseline_mixture(name, inputs.available, budget=inputs.budget, max_epochs=inputs.max_epochs,
                                       temperature=cfg.temperature)
                candidates[name] = [mix[d] for d in bins.domains]
        if progress:
            progress(f"validation: {len(candidates)} mixtures x {v.seeds} seed(s)")
        steps, seeds = v.steps or spec.proxies.train.steps, [seed + i for i in range(v.seeds)]
        outcome.validation = validation_runs(bins, spec.proxies, candidates, steps=steps, seeds=seeds,
                                             progress=progress)
        if v.model is not None:
            outcome.validation_large = larger_scale_validation(bins, spec.proxies, candidates, v, seeds=seeds,
                                                               steps=steps, progress=progress)
        if outcome.method == "aioli":
            # Aioli is online: besides its final mixture held fixed, validate the runs it trains itself.
            outcome.validation["aioli_online"] = aioli_online_validation(
                bins, spec.proxies, inputs, cfg, steps=steps, seeds=seeds, progress=progress)
    return write_outcome(root, outcome)


__all__ = ["MixingInputError", "aioli_online_validation", "larger_scale_validation", "available_tokens", "choose_aioli", "read_proxy_table", "run_mixing"]
