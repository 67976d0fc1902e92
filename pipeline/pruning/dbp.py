"""Density-based pruning by complexity of concept clusters (Abbas et al. 2024, "Effective pruning of
web-scale datasets based on complexity of concept clusters"; amro-kamal/effective_pruning).

Per cluster j (centroids unit-norm, cosine distance d = 1 - cos):
- d_intra(j) = mean distance of its members to c_j;
- d_inter(j) = mean distance from c_j to its l nearest *other* centroids (reference default l = 20);
- C_j = d_intra(j) * d_inter(j); shares P = softmax(C / tau) (reference default tau = 0.5).
Budgets solve min 1/2 ||x||^2 - (P N)^T x  s.t.  sum x = N, lb_j <= x_j <= n_j, whose solution is
x_j = clip(P_j N + nu, lb_j, n_j) with one scalar nu found by bisection: a cluster smaller than its
share is capped and its surplus spreads additively over the others. Budgets are rounded at the end
by largest remainder so that they sum to N exactly without breaking a cap. lb_j = min(floor(m),
n_j - 1) with m = balance * N / k (reference code: balance 0.5; the paper's best runs: none, our
default). Within a cluster the x_j members farthest from the centroid (least prototypical) are kept.

Empty clusters (possible in per-domain scope, where the global clusters are restricted to one
domain) get no share; their centroids still count as neighbours for d_inter, since the concept
landscape is global. With a single centroid d_inter is undefined and set to 1 (shares are then 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Complexity:
    sizes: np.ndarray       # int64 (k,)
    d_intra: np.ndarray     # float64 (k,), NaN for empty clusters
    d_inter: np.ndarray     # float64 (k,)
    complexity: np.ndarray  # float64 (k,), NaN for empty clusters
    share: np.ndarray       # float64 (k,), softmax(C / tau) over non-empty clusters, 0 elsewhere


def cluster_complexity(labels: np.ndarray, distance: np.ndarray, centroids: np.ndarray, *,
                       l: int, tau: float) -> Complexity:
    k = centroids.shape[0]
    sizes = np.bincount(labels, minlength=k).astype(np.int64)
    sums = np.bincount(labels, weights=distance.astype(np.float64), minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_intra = np.where(sizes > 0, sums / np.maximum(sizes, 1), np.nan)
    if k > 1:
        c = centroids.astype(np.float64)
        dist = np.clip(1.0 - c @ c.T, 0.0, 2.0)
        np.fill_diagonal(dist, np.inf)
        nearest = np.sort(dist, axis=1)[:, : min(l, k - 1)]
        d_inter = nearest.mean(axis=1)
    else:
        d_inter = np.ones(k)
    complexity = d_intra * d_inter
    share = np.zeros(k)
    present = sizes > 0
    if present.any():
        z = complexity[present] / tau
        z = np.exp(z - z.max())
        share[present] = z / z.sum()
    return Complexity(sizes=sizes, d_intra=d_intra, d_inter=d_inter, complexity=complexity, share=share)


def capped_simplex(share: np.ndarray, total: float, caps: np.ndarray, lower: np.ndarray | None = None,
                   *, iterations: int = 200) -> np.ndarray:
    """x = clip(share * total + nu, lower, caps) with sum x = total (nu by bisection); real-valued."""
    caps = np.asarray(caps, dtype=np.float64)
    lower = np.zeros_like(caps) if lower is None else np.minimum(np.asarray(lower, dtype=np.float64), caps)
    if total >= caps.sum():
        return caps.copy()
    if total <= lower.sum():
        return lower.copy()
    base = np.asarray(share, dtype=np.float64) * total
    lo, hi = float((lower - base).min()) - 1.0, float((caps - base).max()) + 1.0
    for _ in range(iterations):  # sum(clip(base + nu)) is non-decreasing in nu
        mid = 0.5 * (lo + hi)
        if np.clip(base + mid, lower, caps).sum() < total:
            lo = mid
        else:
            hi = mid
    return np.clip(base + 0.5 * (lo + hi), lower, caps)


def round_budgets(x: np.ndarray, total: int, caps: np.ndarray, lower: np.ndarray | None = None) -> np.ndarray:
    """Integers summing to ``min(total, sum caps)``, within [lower, caps], by largest remainder."""
    caps = np.asarray(caps, dtype=np.int64)
    lower = np.zeros_like(caps) if lower is None else np.minimum(np.asarray(lower, dtype=np.int64), caps)
    total = int(min(total, caps.sum()))
    out = np.clip(np.floor(np.asarray(x, dtype=np.float64) + 1e-9).astype(np.int64), lower, caps)
    frac = np.asarray(x, dtype=np.float64) - out
    missing = total - int(out.sum())
    if missing > 0:
        room = np.flatnonzero(out < caps)
        pick = room[np.lexsort((room, -frac[room]))][:missing]
        out[pick] += 1
        missing -= len(pick)
        while missing > 0:  # only when rounding left more than one unit per cluster to place
            room = np.flatnonzero(out < caps)
            step = room[:missing]
            out[step] += 1
            missing -= len(step)
    elif missing < 0:
        room = np.flatnonzero(out > lower)
        pick = room[np.lexsort((room, frac[room]))][: -missing]
        out[pick] -= 1
    return out


@dataclass
class DBPResult:
    keep: np.ndarray        # bool (n,)
    budgets: np.ndarray     # int64 (k,)
    complexity: Complexity
    rank: np.ndarray        # int64 (n,): position within its cluster by distance, farthest = 0


def dbp_budgets(labels: np.ndarray, distance: np.ndarray, centroids: np.ndarray, *, target: int,
                tau: float = 0.5, l: int = 20, balance: float = 0.0) -> tuple[np.ndarray, Complexity]:
    cx = cluster_complexity(labels, distance, centroids, l=l, tau=tau)
    present = int((cx.sizes > 0).sum())
    m = balance * target / max(present, 1)
    lower = np.where(cx.sizes > 0, np.minimum(np.floor(m), np.maximum(cx.sizes - 1, 0)), 0).astype(np.int64)
    x = capped_simplex(cx.share, float(target), cx.sizes, lower)
    return round_budgets(x, target, cx.sizes, lower), cx


def within_cluster_rank(labels: np.ndarray, score: np.ndarray, *, descending: bool = True) -> np.ndarray:
    """Rank of each member inside its cluster by ``score`` (0 = highest when descending); ties by index."""
    n = len(labels)
    key = -score if descending else score
    order = np.lexsort((np.arange(n), key, labels))
    sorted_labels = labels[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_labels)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first
    return rank


def dbp_select(labels: np.ndarray, distance: np.ndarray, centroids: np.ndarray, *, target: int,
               tau: float = 0.5, l: int = 20, balance: float = 0.0) -> DBPResult:
    """Keep ``target`` documents: per-cluster budgets, farthest from the centroid first."""
    budgets, cx = dbp_budgets(labels, distance, centroids, target=target, tau=tau, l=l, balance=balance)
    rank = within_cluster_rank(labels, distance, descending=True)
    keep = rank < budgets[labels]
    return DBPResult(keep=keep, budgets=budgets, complexity=cx, rank=rank)
