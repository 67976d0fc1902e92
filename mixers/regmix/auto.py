"""``regressor: auto``: per target, the candidate regressor that ranks unseen proxy runs best.

Which regressor wins depends on how many proxy runs a team can afford (bench/bench_regmix_fewrun.py): with a
few dozen runs the mixing law (M + 2 parameters) ranks unseen mixtures far better than a 1000-tree forest; with
hundreds the forest, or the law plus trees on its residuals, catches up and passes it. So the choice is made on
the sweep's own runs: K-fold cross-validation, every run predicted once by each candidate fit without it, the
candidate with the highest Spearman of those out-of-fold predictions wins, and it is refit on all runs. Near-ties
go to the simpler candidate (``CANDIDATES`` order): one within ``TIE`` of the best counts as tied. Spearman only
sees ranks, and any score monotone in a linear one ranks like the linear one, so e.g. ridge and the law tie on a
linear truth up to noise; the extra flexibility should be paid for by a visible gain.

The out-of-fold predictions of the chosen candidate are kept (``oof``): they are the fit-quality figures the
report shows, so the cross-validation is not paid twice. They are slightly optimistic (the best of a few
candidates is picked on the same runs); the benchmark scores the choice on runs it never saw.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from mixers.regmix.regressors import CANDIDATES, MIN_TREE_RUNS, make_regressor

DEFAULT_FOLDS = 5
TIE = 0.002


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """A seeded assignment of ``n`` runs to ``min(folds, n)`` folds of (near) equal size."""
    return np.random.default_rng(seed).permutation(n) % max(2, min(folds, n))


@dataclass
class AutoRegressor:
    """Chooses among ``candidates`` by cross-validated Spearman, then behaves as the chosen one refit on all runs."""

    candidates: tuple[str, ...] = CANDIDATES
    folds: int = DEFAULT_FOLDS
    ridge_alpha: float = 0.01
    seed: int = 42
    num_boost_round: int = 1000
    learning_rate: float = 0.01
    kind: str = "auto"
    chosen: str | None = None
    cv_scores: dict[str, float] = field(default_factory=dict)
    oof: np.ndarray | None = field(default=None, repr=False)
    _model: object = field(default=None, repr=False)

    def _make(self, kind: str, n_rows: int):
        return make_regressor(kind, n_rows, ridge_alpha=self.ridge_alpha, seed=self.seed,
                              num_boost_round=self.num_boost_round, learning_rate=self.learning_rate)

    def eligible(self, n_rows: int) -> list[str]:
        """Tree candidates only where each training fold can grow trees (else they repeat another candidate)."""
        n_train = n_rows - int(np.ceil(n_rows / max(2, min(self.folds, n_rows))))
        trees = ("lightgbm", "law_lightgbm")
        return [c for c in self.candidates if c not in trees or n_train >= MIN_TREE_RUNS]

    def fit(self, X: np.ndarray, y: np.ndarray) -> AutoRegressor:
        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.float64)
        n = len(X)
        names = self.eligible(n)
        if n < 6 or not names:
            # Too few runs to cross-validate: the law, the candidate with the fewest parameters per run.
            self.chosen, self.cv_scores, self.oof = "mixing_law", {}, None
        else:
            fold_of = fold_ids(n, self.folds, self.seed)
            oof = {c: np.empty(n) for c in names}
            for f in np.unique(fold_of):
                test, train = fold_of == f, fold_of != f
                fitted = {}
                for c in names:
                    model = self._make(c, int(train.sum()))
                    shared = fitted.get("mixing_law") if model.kind == "law_lightgbm" else None
                    fitted[c] = model.fit(X[train], y[train], law=shared) if shared else model.fit(X[train], y[train])
                    oof[c][test] = fitted[c].predict(X[test])
            self.cv_scores = {c: _spearman(oof[c], y) for c in names}
            scored = [c for c in names if np.isfinite(self.cv_scores[c])]
            top = max((self.cv_scores[c] for c in scored), default=np.nan)
            self.chosen = next((c for c in scored if self.cv_scores[c] >= top - TIE), names[0])
            self.oof = oof[self.chosen]
        self._model = self._make(self.chosen, n).fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._model.predict(X)

    @property
    def model(self):
        return self._model

    def fingerprint(self) -> str:
        return hashlib.sha256(f"auto:{self.chosen}:{self._model.fingerprint()}".encode()).hexdigest()


__all__ = ["AutoRegressor", "fold_ids"]
