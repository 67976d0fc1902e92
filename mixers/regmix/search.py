"""RegMix's search: predict many simulated mixtures, average the top-k lowest-predicted ones.

Reference semantics (RegMix paper section 3 and its regression notebook): simulated mixtures are drawn from
Dirichlet(prior x strength) over the token-distribution prior (strength 1, no temperature), the fitted
regressor predicts the target loss of each, and the mean of the k best is the answer. The paper's text says
1,000,000 simulations and k = 100; the notebook uses 100,000 and k = 128. We default to the paper.

The per-domain bounds (epoch caps) are enforced by rejecting simulated mixtures that exceed them; since the
bounded set is convex, the top-k average respects the caps too. Prediction runs in chunks so memory stays
flat (1M x k float64 at a time would be fine too, but a tree model's predict is the bottleneck anyway).

Screening (``rescore``): a 1000-tree forest predicts a million rows in 46 to 119 s on a loaded 2-core machine;
a closed-form model (ridge, the mixing law) in about a second. For an expensive model the search first scores a
seeded sample of ``SURROGATE_SAMPLE`` simulated mixtures with it, distils those predictions into a small forest
(30 trees: a forest follows a forest's steps, which a smooth quadratic surrogate does not: on the released RegMix
runs the quadratic's best 2% held none of the full model's top-100, the small forest's 99%), screens all
candidates with it, and rescores only the ``rescore`` best (plus the sample) with the full model; the top-k are
taken from those. bench/bench_regmix_search.py compares the chosen mixture with the full search's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SearchResult:
    mixture: np.ndarray          # the top-k average, on the simplex, within bounds
    top: np.ndarray              # (k, n_domains) the k best simulated mixtures
    top_predicted: np.ndarray    # (k,) their predicted target
    n_simulated: int             # mixtures predicted (after rejection)
    n_rejected: int              # draws rejected by the bounds
    predicted_best: float        # the lowest prediction found


def simulate(prior: np.ndarray, n: int, rng: np.random.Generator, *, strength: float = 1.0,
             upper: np.ndarray | None = None, max_rounds: int = 50) -> tuple[np.ndarray, int]:
    """``n`` draws of Dirichlet(prior x strength) within ``upper``; returns (draws, rejected)."""
    alpha = np.asarray(prior, np.float64) / np.sum(prior) * strength
    out, have, rejected = [], 0, 0
    for _ in range(max_rounds):
        draw = rng.dirichlet(alpha, size=max(n - have, 1024))
        draw = draw[np.isfinite(draw).all(axis=1)]
        if upper is not None:
            ok = np.all(draw <= upper, axis=1)
            rejected += int((~ok).sum())
            draw = draw[ok]
        take = draw[: n - have]
        out.append(take)
        have += len(take)
        if have >= n:
            return np.concatenate(out), rejected
    raise ValueError(f"the bounds reject almost every Dirichlet draw ({rejected} rejected, {have} kept); "
                     "loosen the epoch cap or lower the budget")


SURROGATE_SAMPLE = 10_000
SURROGATE_PARAMS = {"objective": "regression", "learning_rate": 0.3, "num_leaves": 63, "min_child_samples": 5,
                    "seed": 0, "deterministic": True, "force_row_wise": True, "verbose": -1, "num_threads": 1}
SURROGATE_ROUNDS = 30


def fit_surrogate(X: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A small forest fit to ``y`` (a full model's predictions on ``X``): the cheap screen."""
    import lightgbm as lgb

    booster = lgb.train(SURROGATE_PARAMS, lgb.Dataset(X, label=y, params={"verbose": -1}),
                        num_boost_round=SURROGATE_ROUNDS)
    return lambda A: booster.predict(A, num_threads=0)


class _TopK:
    """A running top-k (lowest values) over chunks."""

    def __init__(self, k: int, dim: int):
        self.k, self.x, self.y = k, np.empty((0, dim)), np.empty(0)

    def add(self, X: np.ndarray, y: np.ndarray) -> None:
        X = np.concatenate([self.x, X])
        y = np.concatenate([self.y, y])
        keep = np.argpartition(y, self.k - 1)[: self.k] if len(y) > self.k else np.arange(len(y))
        self.x, self.y = X[keep], y[keep]


def search(predict: Callable[[np.ndarray], np.ndarray], prior: np.ndarray, *, n: int = 1_000_000,
           top_k: int = 100, seed: int = 0, strength: float = 1.0, upper: np.ndarray | None = None,
           chunk: int = 200_000, rescore: int | None = None) -> SearchResult:
    """Minimize ``predict`` over ``n`` simulated mixtures; the answer is the mean of the ``top_k`` best.

    ``rescore``: screen with a small distilled forest and predict only the ``rescore`` best candidates (and the
    surrogate's sample) with ``predict`` (see the module doc); None or 0: predict every candidate."""
    if top_k <= 0 or top_k > n:
        raise ValueError(f"top_k must be in 1..n, got {top_k}")
    rng = np.random.default_rng(seed)
    best = _TopK(top_k, len(prior))
    done = rejected = 0
    screen = None
    if rescore and rescore + SURROGATE_SAMPLE < n:
        # The sample is drawn from its own stream so the candidates are the same with or without screening.
        sample, _ = simulate(prior, SURROGATE_SAMPLE, np.random.default_rng([seed, 1]), strength=strength,
                             upper=upper)
        sample_y = np.asarray(predict(sample), np.float64)
        best.add(sample, sample_y)
        screen, shortlist = fit_surrogate(sample, sample_y), _TopK(max(rescore, top_k), len(prior))
    while done < n:
        size = min(chunk, n - done)
        X, rej = simulate(prior, size, rng, strength=strength, upper=upper)
        rejected += rej
        if screen is None:
            best.add(X, np.asarray(predict(X), np.float64))
        else:
            shortlist.add(X, screen(X))
        done += size
    if screen is not None:
        best.add(shortlist.x, np.asarray(predict(shortlist.x), np.float64))
    best_x, best_y = best.x, best.y
    order = np.argsort(best_y, kind="stable")
    best_x, best_y = best_x[order], best_y[order]
    mixture = best_x.mean(axis=0)
    mixture = mixture / mixture.sum()
    return SearchResult(mixture=mixture, top=best_x, top_predicted=best_y, n_simulated=n, n_rejected=rejected,
                        predicted_best=float(best_y[0]))


__all__ = ["SURROGATE_SAMPLE", "SearchResult", "fit_surrogate", "search", "simulate"]
