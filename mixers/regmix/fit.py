"""RegMix end to end on a table of proxy runs: fit one regressor per target, check it on held-out runs,
search the simplex for the mixture with the lowest predicted combined target.

The combined target is ``sum_t w_t * loss_t`` over the targets named in the spec (per-domain validation
losses and target-set losses alike). One regressor is fit per target with a non-zero weight (the paper fits
one per validation domain) and their predictions are combined with the same weights, so a report can show
every target's fit quality separately.

Fit quality: the runs are split once (seeded) into a fitting part and a held-out part (``holdout`` of them);
Spearman and MSE of predicted vs actual on the held-out runs are reported per target and for the combination.
The regressors used for the search are then refit on all runs (more runs beat a cleaner split: RegMix's
learning curve still rises at 256 runs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import spearmanr

from mixers.regmix.regressors import Regressor, RegressorKind, make_regressor
from mixers.regmix.search import SearchResult, search


@dataclass(frozen=True)
class ProxyRuns:
    """Proxy-run results as plain arrays: one row per run."""

    run_ids: list[str]
    domains: list[str]
    weights: np.ndarray                 # (n_runs, n_domains), rows on the simplex
    losses: dict[str, np.ndarray]       # target name -> (n_runs,) validation loss

    def __post_init__(self):
        n = len(self.run_ids)
        if self.weights.shape != (n, len(self.domains)):
            raise ValueError(f"weights must be ({n}, {len(self.domains)}), got {self.weights.shape}")
        for name, y in self.losses.items():
            if y.shape != (n,):
                raise ValueError(f"losses[{name!r}] must have one value per run")
            if not np.all(np.isfinite(y)):
                raise ValueError(f"losses[{name!r}] has non-finite values")

    def subset(self, rows: np.ndarray) -> ProxyRuns:
        return ProxyRuns([self.run_ids[i] for i in rows], self.domains, self.weights[rows],
                         {k: v[rows] for k, v in self.losses.items()})


@dataclass(frozen=True)
class FitQuality:
    spearman: float
    mse: float
    n_fit: int
    n_heldout: int
    predicted: np.ndarray
    actual: np.ndarray
    # The trivial rule "rank runs by the weight of the target's own domain" (METHODS: 81.7 on the Pile).
    weight_only_spearman: float | None = None


@dataclass
class RegMixModel:
    targets: dict[str, float]                       # target -> weight (non-zero only)
    regressors: dict[str, Regressor]
    kind: str

    def predict_targets(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {t: r.predict(X) for t, r in self.regressors.items()}

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float64)
        total = np.zeros(len(X))
        for t, w in self.targets.items():
            total += w * self.regressors[t].predict(X)
        return total

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for t in sorted(self.regressors):
            h.update(f"{t}={self.targets[t]!r}:{self.regressors[t].fingerprint()};".encode())
        return h.hexdigest()


@dataclass
class RegMixResult:
    mixture: dict[str, float]
    model: RegMixModel
    search: SearchResult
    quality: dict[str, FitQuality]                  # per target, plus "combined"
    predicted: dict[str, float] = field(default_factory=dict)   # "regmix" and baselines -> predicted target


def resolve_targets(runs: ProxyRuns, weights: Mapping[str, float] | None) -> dict[str, float]:
    """Normalize target weights; empty means the mean of the per-domain validation losses."""
    if not weights:
        names = [d for d in runs.domains if d in runs.losses] or sorted(runs.losses)
        weights = {d: 1.0 for d in names}
    unknown = sorted(set(weights) - set(runs.losses))
    if unknown:
        raise ValueError(f"target(s) {unknown} have no losses in the proxy runs; known: {sorted(runs.losses)}")
    total = float(sum(weights.values()))
    if total <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError("target weights must be non-negative with a positive sum")
    return {t: float(w) / total for t, w in weights.items() if w > 0}


def fit_model(runs: ProxyRuns, targets: Mapping[str, float], kind: RegressorKind, *, seed: int = 42,
              ridge_alpha: float = 0.01, num_boost_round: int = 1000, learning_rate: float = 0.01) -> RegMixModel:
    regressors: dict[str, Regressor] = {}
    for t in targets:
        reg = make_regressor(kind, len(runs.run_ids), ridge_alpha=ridge_alpha, seed=seed,
                             num_boost_round=num_boost_round, learning_rate=learning_rate)
        regressors[t] = reg.fit(runs.weights, runs.losses[t])
    kinds = {r.kind for r in regressors.values()}
    return RegMixModel(dict(targets), regressors, kind=kinds.pop() if len(kinds) == 1 else "mixed")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def fit_quality(model: RegMixModel, heldout: ProxyRuns, n_fit: int) -> dict[str, FitQuality]:
    preds = model.predict_targets(heldout.weights)
    out: dict[str, FitQuality] = {}
    for t, p in preds.items():
        y = heldout.losses[t]
        own = heldout.weights[:, heldout.domains.index(t)] if t in heldout.domains else None
        out[t] = FitQuality(_spearman(p, y), float(np.mean((p - y) ** 2)), n_fit, len(y), p, y,
                            weight_only_spearman=None if own is None else _spearman(-own, y))
    y = sum(w * heldout.losses[t] for t, w in model.targets.items())
    p = model.predict(heldout.weights)
    out["combined"] = FitQuality(_spearman(p, y), float(np.mean((p - y) ** 2)), n_fit, len(y), p, y)
    return out


def split_runs(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split; at least 3 held-out runs when ``holdout`` > 0 and enough runs exist."""
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(n * holdout))
    if holdout > 0 and n >= 8:
        k = max(k, 3)
    return np.sort(order[k:]), np.sort(order[:k])


def run_regmix(runs: ProxyRuns, *, prior: np.ndarray, upper: np.ndarray | None = None,
               target_weights: Mapping[str, float] | None = None, regressor: RegressorKind = "lightgbm",
               num_samples: int = 1_000_000, top_k: int = 100, holdout: float = 0.2, seed: int = 0,
               search_strength: float = 1.0, baselines: Mapping[str, np.ndarray] | None = None,
               ridge_alpha: float = 0.01, num_boost_round: int = 1000, learning_rate: float = 0.01) -> RegMixResult:
    """Fit, check on held-out runs, refit on all runs, search; the chosen mixture respects ``upper``."""
    targets = resolve_targets(runs, target_weights)
    opts = dict(ridge_alpha=ridge_alpha, num_boost_round=num_boost_round, learning_rate=learning_rate)
    fit_rows, held_rows = split_runs(len(runs.run_ids), holdout, seed)
    quality: dict[str, FitQuality] = {}
    if len(held_rows):
        partial = fit_model(runs.subset(fit_rows), targets, regressor, **opts)
        quality = fit_quality(partial, runs.subset(held_rows), len(fit_rows))
    model = fit_model(runs, targets, regressor, **opts)
    found = search(model.predict, prior, n=num_samples, top_k=min(top_k, num_samples), seed=seed,
                   strength=search_strength, upper=upper)
    mixture = dict(zip(runs.domains, found.mixture.tolist()))
    predicted = {"regmix": float(model.predict(found.mixture[None])[0])}
    for name, w in (baselines or {}).items():
        predicted[name] = float(model.predict(np.asarray(w, np.float64)[None])[0])
    return RegMixResult(mixture, model, found, quality, predicted)


__all__ = ["FitQuality", "ProxyRuns", "RegMixModel", "RegMixResult", "fit_model", "fit_quality",
           "resolve_targets", "run_regmix", "split_runs"]
