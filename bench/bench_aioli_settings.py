"""Is there a setting on our corpora where Aioli beats stratified (uniform) sampling? Paired seeds.

bench/bench_mixing_e2e.py measured Aioli's online runs 0.17 worse than uniform at a 200-step budget, with 4
rounds of 10 one-step probes (20% of the budget spent on near one-hot mixtures). This tries the three levers
the issue names, each against uniform trained with the same steps (tokens) and the same seeds (same
initialization and data-stream seed; only the mixture differs), scored on the test slice no mixer reads:
(the e2e setting itself, 4 rounds of 10 probes in 200 steps, is not re-run: +0.173 ± 0.020 over 6 seeds);
- ``fewer_probes_200``: 2 rounds of 10 one-step probes (10% of the budget);
- ``grouped5_200``: the 10 domains in 5 pairs of related domains (Aioli's k = 5, each group's share split
  evenly between its two domains, so uniform over groups is uniform over domains; a group's loss is the mean
  of its domains'): 4 rounds of 5 probes (10%);
- ``fewer_probes_eta20_200`` and ``grouped5_eta10_200``: the same with a larger step size eta (see SETTINGS);
- ``longer_600``: 3x the steps, 4 rounds of 10 probes (6.7%).
Everything else is the e2e benchmark's (eta 1, EMA 0.1, one-hot factor 0.75, 4,096 probe tokens per
domain). Work folder and bins: bench/bench_mixing_e2e.py's (``CURAMIX_MIXING_E2E_DIR``). Figures are written
to ``<work>/aioli_settings_figures.json`` after each setting.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import yaml

from bench.bench_mixing_e2e import PROXIES, _log, _spec_body, prepare_bins

SEEDS = 3
# Pairs of related domains (the corpora README's groups): uniform over the 5 groups is uniform over domains.
GROUPS = [["books", "speeches"], ["web_ugc", "dialogue"], ["code", "techdocs"], ["math", "science"],
          ["encyclopedia", "law"]]
E2E_AIOLI = {"update_steps": 50, "lp_rounds": 1, "lp_steps": 1, "one_hot_factor": 0.75, "eta": 1.0, "ema": 0.1,
             "eval_tokens": 4096}
SETTINGS = [
    ("fewer_probes_200", 200, None, {"update_steps": 100}),
    ("grouped5_200", 200, GROUPS, {"update_steps": 50}),
    # With EMA, p = normalize(exp(eta x column sums of the normalized A)) from uniform each round; A sums to 1
    # over k x k entries, so at eta 1 the column sums differ by hundredths and p stays within a few % of
    # uniform. A larger eta lets p move as far as natural or temperature sit from uniform.
    ("fewer_probes_eta20_200", 200, None, {"update_steps": 100, "eta": 20.0}),
    ("grouped5_eta10_200", 200, GROUPS, {"update_steps": 50, "eta": 10.0}),
    ("longer_600", 600, None, {"update_steps": 150}),
]


class GroupedTrainer:
    """Aioli's trainer over groups of domains: a group's share is split evenly among its domains; a group's
    loss is the mean of its domains' losses (the average-loss objective, grouped)."""

    def __init__(self, inner, groups: list[list[int]], n_domains: int):
        self.inner, self.groups, self.n = inner, groups, n_domains

    def train(self, mixture: np.ndarray, steps: int) -> None:
        w = np.zeros(self.n)
        for share, idx in zip(mixture, self.groups):
            w[idx] += share / len(idx)
        self.inner.train(w, steps)

    def evaluate(self) -> np.ndarray:
        losses = np.asarray(self.inner.evaluate())
        return np.array([losses[idx].mean() for idx in self.groups])


def grouped_online(bins, proxies_cfg, a, *, groups: list[list[str]], steps: int, seeds: list[int]) -> dict:
    """Aioli online over domain groups, one run per seed; the per-seed test losses per domain."""
    from mixers.aioli import AioliParams, run_aioli
    from proxies.online import ProxyMixtureTrainer

    idx = [[bins.domains.index(d) for d in g] for g in groups]
    per_seed, finals, probes = [], [], 0
    for s in seeds:
        inner = ProxyMixtureTrainer(bins, proxies_cfg, seed=s, total_steps=steps, eval_tokens=a.eval_tokens)
        params = AioliParams(total_steps=steps, update_steps=a.update_steps, lp_rounds=a.lp_rounds,
                             lp_steps=a.lp_steps, one_hot_factor=a.one_hot_factor, eta=a.eta, ema=a.ema, seed=s)
        result = run_aioli(GroupedTrainer(inner, idx, len(bins.domains)), len(groups), params)
        per_seed.append(dict(zip(bins.domains, inner.test_losses().tolist())))
        finals.append({"+".join(g): float(p) for g, p in zip(groups, result.mixture)})
        probes = sum(x.steps for x in result.schedule if x.kind == "probe")
    return {"per_seed_average": [float(np.mean(list(p.values()))) for p in per_seed],
            "losses": {d: float(np.mean([p[d] for p in per_seed])) for d in bins.domains},
            "final_mixtures": finals, "probe_steps": probes}


def _load(work: Path, name: str, key: list):
    path = work / "aioli_settings" / f"{name}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["key"] == json.loads(json.dumps(key, default=float)):
            _log(f"{name}: cached in {path}")
            return saved["entry"]
    return None


def _store(work: Path, name: str, key: list, entry: dict) -> None:
    from pipeline.store import atomic_file

    path = work / "aioli_settings" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps({"key": key, "entry": entry}, default=float))


def _paired(a: list[float], b: list[float]) -> dict:
    d = np.array(a) - np.array(b)
    return {"mean": float(d.mean()), "per_seed": d.tolist(),
            "stderr": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None,
            "seeds_better": int((d < 0).sum()), "seeds": len(d)}


def run(quick: bool = False) -> dict:
    from mixers.aioli import plan_rounds
    from mixers.choose import mixing_inputs
    from mixers.stage import aioli_online_validation, available_tokens
    from pipeline.spec import load_spec
    from pipeline.store import DataRoot
    from proxies.online import validation_runs

    import torch

    # One thread: on a 2-core machine shared with other jobs, two OpenMP threads per process made a proxy
    # step ~30x slower (1.6 s vs 0.055 s, measured side by side); the figures are losses, not timings.
    torch.set_num_threads(1)
    work = Path(os.environ.get("CURAMIX_MIXING_E2E_DIR", "/tmp/curamix_mixing_e2e"))
    work.mkdir(parents=True, exist_ok=True)
    body = _spec_body(work, PROXIES["train"]["steps"])
    body["mixing"]["method"] = "aioli"
    body["mixing"]["aioli"] = E2E_AIOLI
    body["proxies"]["train"]["compile"] = False  # eager: compiling costs minutes on a loaded single thread
    path = work / "spec_aioli_settings.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    spec = load_spec(path)
    root = DataRoot(spec.data_root)
    figures: dict = {"seeds": SEEDS, "base_aioli": E2E_AIOLI, "groups": GROUPS, "settings": {}, "timings_s": {}}
    bins, meta = prepare_bins(spec, root, figures)
    cfg = spec.mixing
    inputs = mixing_inputs(available_tokens(meta), cfg, budget_tokens=spec.output.total_tokens,
                           max_epochs=spec.output.max_epochs)
    uniform = inputs.baselines(["uniform"], cfg.temperature)["uniform"]
    seed = spec.seed_for("mixing") % 2**31
    seeds = [seed + 1000 + i for i in range(1 if quick else SEEDS)]
    figures["validation_seeds"] = seeds
    stratified: dict[int, dict] = {}
    # CURAMIX_AIOLI_SETTINGS="a,b": only those settings (several processes can share the work; each setting's
    # figures are kept in <work>/aioli_settings/, and a run finds there what another one measured).
    wanted = os.environ.get("CURAMIX_AIOLI_SETTINGS")
    settings = SETTINGS[:1] if quick else [s for s in SETTINGS if not wanted or s[0] in wanted.split(",")]
    # The in-training evaluation of the uniform runs is not used (they are scored on the test slice).
    test_tokens = spec.proxies.train.eval_tokens
    val_cfg = dataclasses.replace(spec.proxies, train=dataclasses.replace(spec.proxies.train, eval_tokens=1024))
    for name, steps, groups, overrides in settings:
        steps = 30 if quick else steps
        t = time.perf_counter()
        a = dataclasses.replace(cfg.aioli, **({"update_steps": 15} if quick else overrides))
        key = [name, steps, groups, dataclasses.asdict(a), seeds, PROXIES]
        cached = _load(work, name, key)
        if cached is not None:
            figures["settings"][name] = cached
            continue
        if steps not in stratified:
            stratified[steps] = _load(work, f"uniform_{steps}", [steps, seeds, PROXIES])
        if stratified[steps] is None:
            _log(f"stratified (uniform): {len(seeds)} seeds x {steps} steps")
            stratified[steps] = validation_runs(bins, val_cfg, {"uniform": [uniform[d] for d in bins.domains]},
                                                steps=steps, seeds=seeds, eval_tokens=test_tokens,
                                                progress=_log)["uniform"]
            _store(work, f"uniform_{steps}", [steps, seeds, PROXIES], stratified[steps])
        _log(f"{name}: aioli online, {len(seeds)} seeds x {steps} steps")
        if groups:
            online = grouped_online(bins, spec.proxies, a, groups=groups, steps=steps, seeds=seeds)
        else:
            online = aioli_online_validation(bins, spec.proxies, inputs, dataclasses.replace(cfg, aioli=a),
                                             steps=steps, seeds=seeds)
            online["probe_steps"] = len(plan_rounds(steps, a.update_steps)) * a.lp_rounds * len(bins.domains) * a.lp_steps
        base = stratified[steps]
        figures["settings"][name] = {
            "steps": steps, "groups": groups, "aioli": dataclasses.asdict(a), "probe_steps": online["probe_steps"],
            "probe_share": online["probe_steps"] / steps, "aioli_average": float(np.mean(online["per_seed_average"])),
            "uniform_average": float(np.mean(base["per_seed_average"])),
            "aioli_per_seed": online["per_seed_average"], "uniform_per_seed": base["per_seed_average"],
            "aioli_minus_uniform": _paired(online["per_seed_average"], base["per_seed_average"]),
            "per_domain_gap": {d: online["losses"][d] - base["losses"][d] for d in bins.domains},
            "final_mixtures": online["final_mixtures"], "seconds": round(time.perf_counter() - t, 1)}
        _store(work, name, key, figures["settings"][name])
        p = figures["settings"][name]["aioli_minus_uniform"]
        _log(f"{name}: aioli - uniform {p['mean']:+.4f} ± {p['stderr'] or 0:.4f} ({p['seeds_better']}/{p['seeds']})")
        if not wanted:
            (work / "aioli_settings_figures.json").write_text(json.dumps(figures, indent=2, default=float))
    wins = [n for n, s in figures["settings"].items()
            if s["aioli_minus_uniform"]["seeds_better"] == s["aioli_minus_uniform"]["seeds"]
            and s["aioli_minus_uniform"]["mean"] < 0]
    figures["settings_where_aioli_beats_uniform_every_seed"] = wins
    return figures


def summarize(f: dict) -> str:
    rows = "; ".join(f"{n} ({s['steps']} steps, {s['probe_share']:.0%} probes): {s['aioli_minus_uniform']['mean']:+.4f}"
                     f" ± {s['aioli_minus_uniform']['stderr'] or 0:.4f}, {s['aioli_minus_uniform']['seeds_better']}/"
                     f"{s['aioli_minus_uniform']['seeds']} seeds better" for n, s in f["settings"].items())
    return (f"Aioli online minus stratified (uniform), mean held-out loss, {f['seeds']} paired seeds: {rows}. "
            f"Settings where Aioli wins in every seed: {f['settings_where_aioli_beats_uniform_every_seed'] or 'none'}.")


if __name__ == "__main__":
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2, default=float))
