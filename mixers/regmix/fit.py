"""RegMix end to end on a table of proxy runs: fit one regressor per target, check it on held-out runs,
search the simplex for the mixture with the lowest predicted combined target.

The combined target is ``sum_t w_t * loss_t`` over the targets named in the spec (per-domain validation
losses and target-set losses alike). Two ways to model it (``fit``):
- ``per_target`` (default; the paper's way): one regressor per target, the prediction is the weighted sum of
  their predictions. Each per-domain loss is a simple function of a few weights (mostly the domain's own), so
  a few dozen runs fit them far better than they fit the sum, which mixes ten such shapes.
- ``combined``: one regressor on the combined target itself. k times cheaper to predict with, which matters
  for a LightGBM search over a million mixtures with many targets.

Fit quality: the runs are split once (seeded) into a fitting part and a held-out part (``holdout`` of them);
Spearman and MSE of predicted vs actual on the held-out runs are reported per target and for the combination.
When that split would hold out fewer than 20 runs (small sweeps), 5-fold cross-validation is used instead:
every run is predicted by a model fit without it, so the Spearman ranks all runs, not four or five.
The regressors used for the search are then refit on all runs (more runs beat a cleaner split: RegMix's
learning curve still rises at 256 runs). With ``regressor: auto`` (mixers/regmix/auto.py) the choice itself
cross-validates every candidate per target; the chosen candidate's out-of-fold predictions are the reported
quality, and no separate split is made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.stats import spearmanr

from mixers.regmix.auto import DEFAULT_FOLDS
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


FitMode = Literal["per_target", "combined"]


@dataclass
class RegMixModel:
    """What the search minimizes: the combined target ``sum_t w_t * loss_t``, predicted by one regressor per
    target (``regressors`` keyed by target) or by one regressor fit on the combination (key ``"combined"``)."""

    targets: dict[str, float]                       # target -> weight (non-zero only)
    regressors: dict[str, Regressor]
    kind: str

    @property
    def mode(self) -> FitMode:
        return "combined" if set(self.regressors) == {"combined"} else "per_target"

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float64)
        if self.mode == "combined":
            return self.regressors["combined"].predict(X)
        return sum(w * self.regressors[t].predict(X) for t, w in self.targets.items())

    @property
    def has_trees(self) -> bool:
        """Whether predicting is expensive (a forest somewhere): the search then screens with a surrogate."""
        def kind(r):
            return kind(r.model) if getattr(r, "kind", None) == "auto" else r.kind

        return any(kind(r) in ("lightgbm", "law_lightgbm") for r in self.regressors.values())

    def choices(self) -> dict[str, dict]:
        """Per target (or ``combined``), what ``regressor: auto`` chose and each candidate's CV Spearman."""
        return {t: {"chosen": r.chosen, "cv_spearman": dict(r.cv_scores)} for t, r in self.regressors.items()
                if getattr(r, "kind", None) == "auto"}

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(repr(sorted(self.targets.items())).encode())
        for name in sorted(self.regressors):
            h.update(name.encode() + self.regressors[name].fingerprint().encode())
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


def combined_target(runs: ProxyRuns, targets: Mapping[str, float]) -> np.ndarray:
    return sum(w * runs.losses[t] for t, w in targets.items())


def fit_one(kind: RegressorKind, X: np.ndarray, y: np.ndarray, **opts) -> Regressor:
    return make_regressor(kind, len(X), **opts).fit(X, y)


def fit_model(runs: ProxyRuns, targets: Mapping[str, float], kind: RegressorKind, *,
              mode: FitMode = "per_target", **opts) -> RegMixModel:
    if mode == "combined" or len(targets) == 1:
        regs = {"combined": fit_one(kind, runs.weights, combined_target(runs, targets), **opts)}
    elif mode == "per_target":
        regs = {t: fit_one(kind, runs.weights, runs.losses[t], **opts) for t in targets}
    else:
        raise ValueError(f"fit must be 'per_target' or 'combined', got {mode!r}")
    return RegMixModel(dict(targets), regs, kind=next(iter(regs.values())).kind)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _quality(p: np.ndarray, y: np.ndarray, n_fit: int, own: np.ndarray | None = None) -> FitQuality:
    return FitQuality(_spearman(p, y), float(np.mean((p - y) ** 2)), n_fit, len(y), p, y,
                      weight_only_spearman=None if own is None else _spearman(-own, y))


def fit_quality(fit: ProxyRuns, heldout: ProxyRuns, targets: Mapping[str, float], kind: RegressorKind,
                *, per_target: bool = True, mode: FitMode = "per_target", **opts) -> dict[str, FitQuality]:
    """Fit on ``fit``, score on ``heldout``: the combined target, and (``per_target``) each target alone."""
    n_fit = len(fit.run_ids)
    out: dict[str, FitQuality] = {}
    if per_target and len(targets) > 1:
        for t in targets:
            p = fit_one(kind, fit.weights, fit.losses[t], **opts).predict(heldout.weights)
            own = heldout.weights[:, heldout.domains.index(t)] if t in heldout.domains else None
            out[t] = _quality(p, heldout.losses[t], n_fit, own)
    t0 = next(iter(targets)) if len(targets) == 1 else None
    own = heldout.weights[:, heldout.domains.index(t0)] if t0 in heldout.domains else None
    if mode == "per_target" and all(t in out for t in targets):
        predicted = sum(w * out[t].predicted for t, w in targets.items())
    else:
        predicted = fit_model(fit, targets, kind, mode=mode, **opts).predict(heldout.weights)
    out["combined"] = _quality(predicted, combined_target(heldout, targets), n_fit, own)
    return out


def crossval_quality(runs: ProxyRuns, targets: Mapping[str, float], kind: RegressorKind, *, folds: int,
                     seed: int, per_target: bool = True, mode: FitMode = "per_target",
                     **opts) -> dict[str, FitQuality]:
    """K-fold out-of-fold predictions: every run is predicted once by a model that never saw it.

    Used when a single held-out split would leave too few runs to rank (fewer than ``MIN_HELDOUT``)."""
    n = len(runs.run_ids)
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    names = [*(targets if per_target and len(targets) > 1 else []), "combined"]
    preds = {t: np.empty(n) for t in names}
    reuse = mode == "per_target" and per_target and len(targets) > 1
    for f in range(folds):
        test, train = np.flatnonzero(fold_of == f), np.flatnonzero(fold_of != f)
        fit, held = runs.subset(train), runs.subset(test)
        for t in names:
            if t == "combined" and reuse:
                # The per-target model's prediction is the weighted sum of the per-target fits just made.
                preds[t][test] = sum(w * preds[u][test] for u, w in targets.items())
            elif t == "combined":
                preds[t][test] = fit_model(fit, targets, kind, mode=mode, **opts).predict(held.weights)
            else:
                preds[t][test] = fit_one(kind, fit.weights, fit.losses[t], **opts).predict(held.weights)
    n_fit = n - int(np.ceil(n / folds))
    out = {}
    for t in names:
        y = combined_target(runs, targets) if t == "combined" else runs.losses[t]
        key = t if t != "combined" else (next(iter(targets)) if len(targets) == 1 else None)
        own = runs.weights[:, runs.domains.index(key)] if key in runs.domains else None
        out[t] = _quality(preds[t], y, n_fit, own)
    return out


MIN_HELDOUT = 20


def auto_quality(runs: ProxyRuns, model: RegMixModel, folds: int) -> dict[str, FitQuality]:
    """Fit quality of an ``auto`` model from the out-of-fold predictions its choice was made on."""
    n = len(runs.run_ids)
    n_fit = n - int(np.ceil(n / max(2, min(folds, n))))
    out: dict[str, FitQuality] = {}
    for t, reg in model.regressors.items():
        if reg.oof is None:
            return {}
        y = combined_target(runs, model.targets) if t == "combined" else runs.losses[t]
        key = next(iter(model.targets)) if t == "combined" and len(model.targets) == 1 else t
        own = runs.weights[:, runs.domains.index(key)] if key in runs.domains else None
        out[t] = _quality(reg.oof, y, n_fit, own)
    if "combined" not in out:
        predicted = sum(w * out[t].predicted for t, w in model.targets.items())
        out["combined"] = _quality(predicted, combined_target(runs, model.targets), n_fit)
    return out


def split_runs(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split; at least 3 held-out runs when ``holdout`` > 0 and enough runs exist."""
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(n * holdout))
    if holdout > 0 and n >= 8:
        k = max(k, 3)
    return np.sort(order[k:]), np.sort(order[:k])


def run_regmix(runs: ProxyRuns, *, prior: np.ndarray, upper: np.ndarray | None = None,
               target_weights: Mapping[str, float] | None = None, regressor: RegressorKind = "auto",
               num_samples: int = 1_000_000, top_k: int = 100, holdout: float = 0.2, seed: int = 0,
               search_strength: float = 1.0, baselines: Mapping[str, np.ndarray] | None = None,
               ridge_alpha: float = 0.01, num_boost_round: int = 1000, learning_rate: float = 0.01,
               per_target_quality: bool = True, fit: FitMode = "per_target",
               search_rescore: int = 10_000) -> RegMixResult:
    """Fit, check on held-out runs, refit on all runs, search; the chosen mixture respects ``upper``."""
    targets = resolve_targets(runs, target_weights)
    opts = dict(ridge_alpha=ridge_alpha, num_boost_round=num_boost_round, learning_rate=learning_rate)
    fit_rows, held_rows = split_runs(len(runs.run_ids), holdout, seed)
    quality: dict[str, FitQuality] = {}
    if regressor == "auto":
        # The choice itself cross-validates every candidate: its out-of-fold predictions are the quality.
        model = fit_model(runs, targets, regressor, mode=fit, **opts)
        quality = auto_quality(runs, model, DEFAULT_FOLDS)
    elif 0 < len(held_rows) < MIN_HELDOUT and len(runs.run_ids) >= 10:
        folds = min(5, len(runs.run_ids) // 2)
        quality = crossval_quality(runs, targets, regressor, folds=folds, seed=seed,
                                   per_target=per_target_quality, mode=fit, **opts)
    elif len(held_rows):
        quality = fit_quality(runs.subset(fit_rows), runs.subset(held_rows), targets, regressor,
                              per_target=per_target_quality, mode=fit, **opts)
    if regressor != "auto":
        model = fit_model(runs, targets, regressor, mode=fit, **opts)
    found = search(model.predict, prior, n=num_samples, top_k=min(top_k, num_samples), seed=seed,
                   strength=search_strength, upper=upper, rescore=search_rescore if model.has_trees else None)
    mixture = dict(zip(runs.domains, found.mixture.tolist()))
    predicted = {"regmix": float(model.predict(found.mixture[None])[0])}
    for name, w in (baselines or {}).items():
        predicted[name] = float(model.predict(np.asarray(w, np.float64)[None])[0])
    return RegMixResult(mixture, model, found, quality, predicted)


__all__ = ["FitMode", "FitQuality", "ProxyRuns", "RegMixModel", "RegMixResult", "combined_target", "fit_model", "fit_quality",
           "resolve_targets", "run_regmix", "split_runs"]
