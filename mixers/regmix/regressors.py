"""Regressors from mixture weights to a validation loss (RegMix section 3, "fitting the regression model").

- ``ridge``: linear regression with a small L2 penalty (RegMix's linear model; METHODS: alpha about 0.01).
- ``ridge_log``: ridge on the weights and their logs, ``log(r_j + 0.01)``: a loss that falls with the log of
  a domain's share (diminishing returns) is linear in these, and still has only 2M + 1 parameters. On the
  released RegMix runs it is the best single regressor below ~200 runs (bench/bench_regmix_fewrun.py).
- ``mixing_law``: the data mixing law ``c + k exp(t . r)`` of Ye et al. 2024 (mixers/regmix/law.py).
- ``law_lightgbm``: the mixing law plus LightGBM on the law's residuals: the law carries the shape (and
  extrapolates), the trees correct what it misses once enough runs exist.
- ``auto``: per target, the one of the above with the best cross-validated Spearman (mixers/regmix/auto.py).
- ``lightgbm``: gradient-boosted trees with the paper's settings: gbdt, objective regression (L2), metrics
  l1 and l2, 1000 boosting rounds, learning rate 0.01, seed 42, other settings at LightGBM's defaults.
  The reference notebook early-stops on the *test* runs, a leak; we train the full 1000 rounds (no early
  stopping), which the re-run in METHODS shows gives the paper's figure (99.0 vs 98.45 Spearman x100).

Small-sample guard: LightGBM's default ``min_child_samples=20`` cannot split a node with fewer than 40 rows,
so with a few dozen proxy runs it predicts the mean for every mixture. Below ``2 x 20`` rows we lower it to
``max(2, n // 8)`` (and ``min_data_in_bin`` with it); below ``MIN_TREE_RUNS`` rows trees are not fit at all
and the ridge model is used instead, which the fitted model records (``kind``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

RegressorKind = Literal["ridge", "ridge_log", "lightgbm", "mixing_law", "law_lightgbm", "auto"]
# The single regressors ``auto`` chooses among (mixers/regmix/auto.py), in its tie-break order: simplest first.
CANDIDATES = ("ridge", "ridge_log", "mixing_law", "lightgbm", "law_lightgbm")
LOG_FLOOR = 0.01
DEFAULT_MIN_CHILD_SAMPLES = 20
MIN_TREE_RUNS = 16


class Regressor(Protocol):
    kind: str

    def fit(self, X: np.ndarray, y: np.ndarray) -> Regressor: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def fingerprint(self) -> str: ...


@dataclass
class RidgeRegressor:
    alpha: float = 0.01
    kind: str = "ridge"
    _model: object = field(default=None, repr=False)

    def fit(self, X: np.ndarray, y: np.ndarray) -> RidgeRegressor:
        from sklearn.linear_model import Ridge

        self._model = Ridge(alpha=self.alpha).fit(np.asarray(X, np.float64), np.asarray(y, np.float64))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        m = self._model
        # A plain matmul: sklearn's per-call checks dominate when predicting a million rows in chunks.
        return np.asarray(X, np.float64) @ m.coef_ + m.intercept_

    def fingerprint(self) -> str:
        m = self._model
        payload = np.concatenate([np.atleast_1d(m.coef_), np.atleast_1d(m.intercept_)]).astype("<f8").tobytes()
        return hashlib.sha256(self.kind.encode() + b":" + payload).hexdigest()


def log_features(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float64)
    return np.concatenate([X, np.log(np.clip(X, 0.0, None) + LOG_FLOOR)], axis=1)


@dataclass
class LogRidgeRegressor(RidgeRegressor):
    kind: str = "ridge_log"

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogRidgeRegressor:
        return super().fit(log_features(X), y)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return super().predict(log_features(X))


@dataclass
class LightGBMRegressor:
    num_boost_round: int = 1000
    learning_rate: float = 0.01
    seed: int = 42
    # Proxy-run tables are tiny (hundreds of rows): one thread fits them faster than a team of OpenMP threads,
    # whose start-up and spinning dominate (measured 2.6 s vs 59 s on a loaded 2-core machine, same model).
    num_threads: int = 1
    kind: str = "lightgbm"
    min_child_samples: int | None = None  # None: LightGBM's default, lowered for small n (see module doc)
    _booster: object = field(default=None, repr=False)

    def params(self, n_rows: int) -> dict:
        mcs = self.min_child_samples
        if mcs is None:
            mcs = DEFAULT_MIN_CHILD_SAMPLES if n_rows >= 2 * DEFAULT_MIN_CHILD_SAMPLES else max(2, n_rows // 8)
        params = {
            "boosting_type": "gbdt",
            "objective": "regression",
            "metric": ["l1", "l2"],
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
            "min_child_samples": mcs,
        }
        if mcs < 3:
            params["min_data_in_bin"] = 1
        if self.num_threads > 0:
            params["num_threads"] = self.num_threads
        return params

    def fit(self, X: np.ndarray, y: np.ndarray) -> LightGBMRegressor:
        import lightgbm as lgb

        X = np.asarray(X, np.float64)
        params = self.params(len(X))
        data = lgb.Dataset(X, label=np.asarray(y, np.float64), params={"verbose": -1,
                                                                       **{k: v for k, v in params.items()
                                                                          if k == "min_data_in_bin"}})
        # keep_training_booster: otherwise LightGBM round-trips the model through a string at the end, a third
        # of the fit's time on tiny tables (auto's cross-validation fits many); the model is the same.
        self._booster = lgb.train(params, data, num_boost_round=self.num_boost_round, keep_training_booster=True)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        # Prediction of a search chunk (200k rows) is where threads pay off: use every core.
        return self._booster.predict(np.asarray(X, np.float64), num_threads=0)

    def fingerprint(self) -> str:
        return hashlib.sha256(b"lightgbm:" + self._booster.model_to_string().encode()).hexdigest()


@dataclass
class LawPlusTreesRegressor:
    """The mixing law, then LightGBM fit on what the law leaves (its residuals); the prediction is the sum."""

    trees: LightGBMRegressor
    seed: int = 42
    kind: str = "law_lightgbm"
    law: object = field(default=None, repr=False)

    def fit(self, X: np.ndarray, y: np.ndarray, *, law=None) -> LawPlusTreesRegressor:
        """``law``: a mixing law already fit on these same rows (auto's cross-validation shares it)."""
        from mixers.regmix.law import MixingLawRegressor

        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.float64)
        self.law = law if law is not None else MixingLawRegressor(seed=self.seed).fit(X, y)
        self.trees.fit(X, y - self.law.predict(X))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.law.predict(X) + self.trees.predict(X)

    def fingerprint(self) -> str:
        return hashlib.sha256(f"law_lightgbm:{self.law.fingerprint()}:{self.trees.fingerprint()}".encode()).hexdigest()


def make_regressor(kind: RegressorKind, n_rows: int, *, ridge_alpha: float = 0.01, seed: int = 42,
                   num_boost_round: int = 1000, learning_rate: float = 0.01, **auto_opts) -> Regressor:
    """The regressor for ``kind``; tree kinds fall back (lightgbm to ridge, law_lightgbm to the law) when too
    few runs exist to grow trees."""
    from mixers.regmix.law import MixingLawRegressor

    enough = n_rows >= MIN_TREE_RUNS
    if kind == "auto":
        from mixers.regmix.auto import AutoRegressor

        return AutoRegressor(ridge_alpha=ridge_alpha, seed=seed, num_boost_round=num_boost_round,
                             learning_rate=learning_rate, **auto_opts)
    if kind == "lightgbm" and enough:
        return LightGBMRegressor(num_boost_round=num_boost_round, learning_rate=learning_rate, seed=seed)
    if kind == "law_lightgbm" and enough:
        return LawPlusTreesRegressor(LightGBMRegressor(num_boost_round=num_boost_round, learning_rate=learning_rate,
                                                       seed=seed), seed=seed)
    if kind in ("mixing_law", "law_lightgbm"):
        return MixingLawRegressor(seed=seed)
    if kind == "ridge_log":
        return LogRidgeRegressor(alpha=ridge_alpha)
    if kind not in ("ridge", "lightgbm"):
        raise ValueError(f"unknown regressor {kind!r}; choose one of {['auto', *CANDIDATES]}")
    return RidgeRegressor(alpha=ridge_alpha)


__all__ = ["CANDIDATES", "LawPlusTreesRegressor", "LightGBMRegressor", "LogRidgeRegressor", "MIN_TREE_RUNS", "Regressor", "RegressorKind", "RidgeRegressor", "make_regressor"]
