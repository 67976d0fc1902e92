"""RegMix's search: predict many simulated mixtures, average the top-k lowest-predicted ones.

Reference semantics (RegMix paper section 3 and its regression notebook): simulated mixtures are drawn from
Dirichlet(prior x strength) over the token-distribution prior (strength 1, no temperature), the fitted
regressor predicts the target loss of each, and the mean of the k best is the answer. The paper's text says
1,000,000 simulations and k = 100; the notebook uses 100,000 and k = 128. We default to the paper.

The per-domain bounds (epoch caps) are enforced by rejecting simulated mixtures that exceed them; since the
bounded set is convex, the top-k average respects the caps too. Prediction runs in chunks so memory stays
flat (1M x k float64 at a time would be fine too, but a tree model's predict is the bottleneck anyway).
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


def search(predict: Callable[[np.ndarray], np.ndarray], prior: np.ndarray, *, n: int = 1_000_000,
           top_k: int = 100, seed: int = 0, strength: float = 1.0, upper: np.ndarray | None = None,
           chunk: int = 200_000) -> SearchResult:
    """Minimize ``predict`` over ``n`` simulated mixtures; the answer is the mean of the ``top_k`` best."""
    if top_k <= 0 or top_k > n:
        raise ValueError(f"top_k must be in 1..n, got {top_k}")
    rng = np.random.default_rng(seed)
    best_x = np.empty((0, len(prior)))
    best_y = np.empty(0)
    done = rejected = 0
    while done < n:
        size = min(chunk, n - done)
        X, rej = simulate(prior, size, rng, strength=strength, upper=upper)
        rejected += rej
        y = np.asarray(predict(X), np.float64)
        # Keep a running top-k: merge this chunk's best with the best so far.
        X = np.concatenate([best_x, X])
        y = np.concatenate([best_y, y])
        keep = np.argpartition(y, top_k - 1)[:top_k] if len(y) > top_k else np.arange(len(y))
        best_x, best_y = X[keep], y[keep]
        done += size
    order = np.argsort(best_y, kind="stable")
    best_x, best_y = best_x[order], best_y[order]
    mixture = best_x.mean(axis=0)
    mixture = mixture / mixture.sum()
    return SearchResult(mixture=mixture, top=best_x, top_predicted=best_y, n_simulated=n, n_rejected=rejected,
                        predicted_best=float(best_y[0]))


__all__ = ["SearchResult", "search", "simulate"]
