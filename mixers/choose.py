"""Choose the mixture for a spec: baselines, caps, RegMix on the proxy-run table or Aioli's result, and the
``mixture.json`` + report written under ``<root>/mixture/``. Plain Python: the asset only calls into here.

``mixture.json``: ``mixture`` (domain -> proportion), ``method``, ``inputs`` (proxy-run ids, regressor kind
and hash, target weights, seeds, available tokens, budget, caps), ``predicted`` (target loss of the chosen
mixture and of each baseline under the regression model), ``baselines``, ``fit_quality``, ``validation``
(held-out losses of proxies trained on each mixture, when run) and the paths of the report and plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mixers.baselines import apply_caps, baseline_mixture, epoch_caps, epochs
from mixers.regmix.fit import ProxyRuns, RegMixResult, run_regmix
from mixers.report import plot_fit, plot_proportions, plot_schedule, report_markdown
from pipeline.config.mixing import MixingConfig
from pipeline.layout import Layout
from pipeline.store import atomic_dir, write_json

SIMPLEX_TOL = 1e-6


@dataclass(frozen=True)
class MixingInputs:
    domains: list[str]
    available: dict[str, float]      # tokens each domain can supply to the training set
    budget: float                    # tokens in the training set
    max_epochs: float
    caps: dict[str, float]           # upper bound on each proportion

    @property
    def prior(self) -> np.ndarray:
        t = np.array([self.available[d] for d in self.domains], np.float64)
        return t / t.sum()

    @property
    def upper(self) -> np.ndarray:
        return np.array([self.caps[d] for d in self.domains], np.float64)

    def baselines(self, names: Sequence[str], temperature: float) -> dict[str, dict[str, float]]:
        return {n: baseline_mixture(n, self.available, budget=self.budget, max_epochs=self.max_epochs,
                                    temperature=temperature) for n in names}


def mixing_inputs(available: Mapping[str, float], cfg: MixingConfig, *, budget_tokens: float,
                  max_epochs: float) -> MixingInputs:
    budget = float(cfg.budget_tokens or budget_tokens)
    cap = float(cfg.max_epochs if cfg.max_epochs is not None else max_epochs)
    caps = epoch_caps(available, budget=budget, max_epochs=cap)
    return MixingInputs(list(available), dict(available), budget, cap, caps)


def check_mixture(mixture: Mapping[str, float], caps: Mapping[str, float], *, tol: float = SIMPLEX_TOL) -> list[str]:
    """Problems with a mixture: off the simplex, negative, or above a cap. Empty list: fine."""
    problems = []
    total = sum(mixture.values())
    if abs(total - 1.0) > tol:
        problems.append(f"proportions sum to {total:.8f}, not 1")
    for d, w in mixture.items():
        if w < -tol or not np.isfinite(w):
            problems.append(f"{d}: proportion {w} is negative or not finite")
        if d in caps and w > caps[d] + tol:
            problems.append(f"{d}: proportion {w:.6f} exceeds its epoch cap {caps[d]:.6f}")
    missing = sorted(set(caps) - set(mixture))
    if missing:
        problems.append(f"domains without a proportion: {missing}")
    return problems


def project(mixture: Mapping[str, float], inputs: MixingInputs) -> dict[str, float]:
    """Clean float noise and re-apply the caps (the top-k average or Aioli's p can sit a hair above a cap)."""
    w = np.clip(np.array([mixture[d] for d in inputs.domains], np.float64), 0.0, None)
    return dict(zip(inputs.domains, apply_caps(w, inputs.upper).tolist()))


@dataclass
class MixtureOutcome:
    method: str
    mixture: dict[str, float]
    inputs: MixingInputs
    baselines: dict[str, dict[str, float]]
    details: dict = field(default_factory=dict)          # method inputs for mixture.json
    predicted: dict[str, float] = field(default_factory=dict)
    quality: dict[str, dict] = field(default_factory=dict)
    fit_points: tuple[np.ndarray, np.ndarray] | None = None
    schedule: list[dict] | None = None
    validation: dict[str, dict] | None = None
    validation_large: dict | None = None      # the same runs with a larger model (mixers/stage.py)
    notes: list[str] = field(default_factory=list)


def choose_regmix(runs: ProxyRuns, inputs: MixingInputs, cfg: MixingConfig, *, seed: int) -> MixtureOutcome:
    if runs.domains != inputs.domains:
        order = [runs.domains.index(d) for d in inputs.domains]
        runs = ProxyRuns(runs.run_ids, inputs.domains, runs.weights[:, order], runs.losses)
    r = cfg.regmix
    baselines = inputs.baselines(cfg.validation.baselines or ["uniform", "natural"], cfg.temperature)
    for name in ("uniform", "natural"):
        baselines.setdefault(name, baseline_mixture(name, inputs.available, budget=inputs.budget,
                                                    max_epochs=inputs.max_epochs))
    result: RegMixResult = run_regmix(
        runs, prior=inputs.prior, upper=inputs.upper, target_weights=cfg.target_weights or None,
        regressor=r.regressor, num_samples=r.num_samples, top_k=r.top_k, holdout=r.holdout, seed=seed,
        search_strength=r.search_strength, ridge_alpha=r.ridge_alpha, num_boost_round=r.num_boost_round,
        learning_rate=r.learning_rate, fit=r.fit, search_rescore=r.search_rescore,
        baselines={n: np.array([m[d] for d in inputs.domains]) for n, m in baselines.items()})
    quality = {t: {"spearman": q.spearman, "mse": q.mse, "n_fit": q.n_fit, "n_heldout": q.n_heldout,
                   "weight_only_spearman": q.weight_only_spearman} for t, q in result.quality.items()}
    combined = result.quality.get("combined")
    details = {
        "proxy_run_ids": list(runs.run_ids),
        "regressor": result.model.kind,
        "fit": result.model.mode,
        "regressor_hash": result.model.fingerprint(),
        "regressor_choice": result.model.choices(),
        "target_weights": result.model.targets,
        "num_samples": result.search.n_simulated,
        "rejected_by_caps": result.search.n_rejected,
        "top_k": len(result.search.top),
        "seed": seed,
    }
    notes = []
    if combined is not None and not combined.spearman >= 0.5:
        notes.append(f"WARNING: the regression ranks held-out proxy runs poorly (Spearman {combined.spearman:.2f} on "
                     f"{combined.n_heldout} runs): the search follows noise; add proxy runs or train them longer "
                     "before trusting this mixture (RegMix used 512 runs for 17 domains)")
    beaten = sorted(n for n, v in result.predicted.items() if n != "regmix" and v < result.predicted["regmix"])
    if beaten:
        notes.append(f"the regression predicts {', '.join(beaten)} below the chosen mixture: either the search's "
                     f"Dirichlet(prior x {r.search_strength:g}) samples rarely reach that region (a larger "
                     "`regmix.search_strength` concentrates them around the prior) or the regression extrapolates "
                     "there (no proxy run near it); the validation runs tell which")
    notes += auto_notes(result.model.choices(), quality)
    if result.model.kind != r.regressor:
        notes.append(f"{len(runs.run_ids)} proxy runs are too few for trees: fell back to {result.model.kind}")
    return MixtureOutcome("regmix", project(result.mixture, inputs), inputs, baselines, details,
                          predicted=result.predicted, quality=quality,
                          fit_points=None if combined is None else (combined.predicted, combined.actual),
                          notes=notes)


def auto_notes(choices: Mapping[str, dict], quality: Mapping[str, dict]) -> list[str]:
    """A warning per target where ``auto``'s chosen regressor does not rank runs better than the domain's own
    weight does: its predictions for that target add nothing a one-line rule would not give."""
    out = []
    for t, c in choices.items():
        own = (quality.get(t) or {}).get("weight_only_spearman")
        score = c["cv_spearman"].get(c["chosen"])
        if own is not None and score is not None and np.isfinite(own) and not score > own:
            out.append(f"WARNING: for target {t}, the chosen regressor ({c['chosen']}, CV Spearman {score:.2f}) does "
                       f"not beat ranking the runs by the domain's own weight ({own:.2f}): more proxy runs, or "
                       "longer ones, are needed before its shape is trustworthy")
    return out


def choose_baseline(name: str, inputs: MixingInputs, cfg: MixingConfig) -> MixtureOutcome:
    baselines = inputs.baselines(["uniform", "natural"], cfg.temperature)
    mix = baseline_mixture(name, inputs.available, budget=inputs.budget, max_epochs=inputs.max_epochs,
                           temperature=cfg.temperature)
    return MixtureOutcome(name, mix, inputs, {k: v for k, v in baselines.items() if k != name},
                          details={"temperature": cfg.temperature} if name == "temperature" else {})


def write_outcome(root: Path, outcome: MixtureOutcome) -> dict:
    """Write ``<root>/mixture/`` (mixture.json, report.md, PNGs) atomically; returns the JSON payload."""
    inputs = outcome.inputs
    with atomic_dir(Layout.at(root).mixture_dir) as tmp:
        plots = {"proportions": plot_proportions(tmp / "proportions.png", inputs.domains, outcome.mixture,
                                                 outcome.method, outcome.baselines, inputs.caps).name}
        if outcome.fit_points is not None and len(outcome.fit_points[0]):
            q = outcome.quality["combined"]
            plots["fit"] = plot_fit(tmp / "fit.png", *outcome.fit_points, title="held-out proxy runs (target)",
                                    spearman=q["spearman"], mse=q["mse"]).name
        if outcome.schedule:
            plots["schedule"] = plot_schedule(tmp / "schedule.png", inputs.domains, outcome.schedule).name
        ep = epochs(outcome.mixture, inputs.available, inputs.budget)
        (tmp / "report.md").write_text(report_markdown(
            method=outcome.method, domains=inputs.domains, chosen=outcome.mixture, baselines=outcome.baselines,
            caps=inputs.caps, epochs=ep, predicted=outcome.predicted, quality=outcome.quality,
            choices=outcome.details.get("regressor_choice"), validation=outcome.validation,
            validation_large=outcome.validation_large, notes=outcome.notes))
        payload = {
            "proportions": outcome.mixture,
            "domains": inputs.domains,  # the column order (JSON keys are written sorted)
            "method": outcome.method,
            "inputs": {**outcome.details, "available_tokens": inputs.available, "budget_tokens": inputs.budget,
                       "max_epochs": inputs.max_epochs, "caps": inputs.caps},
            "epochs": ep,
            "baselines": outcome.baselines,
            "predicted": outcome.predicted,
            "fit_quality": outcome.quality,
            "validation": outcome.validation,
            "validation_large": outcome.validation_large,
            "schedule": outcome.schedule,
            "problems": check_mixture(outcome.mixture, inputs.caps),
            "report": "report.md",
            "plots": plots,
        }
        write_json(tmp / "mixture.json", _plain(payload))
    return payload


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if np.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if hasattr(x, "__dataclass_fields__"):
        return _plain(asdict(x))
    return x


__all__ = ["MixingInputs", "MixtureOutcome", "check_mixture", "choose_baseline", "choose_regmix",
           "mixing_inputs", "project", "write_outcome"]
