"""SemDeDup (Abbas et al. 2023; facebookresearch/SemDeDup), reference semantics.

Within each concept cluster, members are put in the cluster's order (default: hardest first, i.e.
farthest from the centroid first). For member j, M_j = max over earlier members i < j of
cos(e_i, e_j); j is removed iff M_j > 1 - epsilon. Removal is *not* greedy over survivors: a removed
document still removes later ones (a ~ b ~ c with a !~ c removes both b and c), exactly as the
reference's ``max(triu(E E^T, 1), dim=0)`` does. Singletons are kept; duplicates in different
clusters are never compared; with one cluster it is all-pairs dedup.

Where we are stricter than the reference: similarities are clipped to [-1, 1] before the
comparison, so epsilon = 0 removes nothing even when float32 rounding gives an exact duplicate a
similarity of 1.0000001 (the paper states epsilon = 0 removes nothing). A tiny epsilon removes
exact duplicates. The similarity matrix is built in row blocks, so memory is O(block * cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

OrderPolicy = Literal["hardest_first", "easiest_first", "random", "input"]
BLOCK = 1024


@dataclass
class SemDeDupResult:
    remove: np.ndarray        # bool (n,)
    max_sim: np.ndarray       # float32 (n,): M_j, NaN for the first member of a cluster
    duplicate_of: np.ndarray  # int64 (n,): the earlier member reaching M_j, -1 if none


def order_key(policy: OrderPolicy, *, distance: np.ndarray, seed: int = 0) -> np.ndarray:
    """Ascending sort key giving the cluster order for ``policy`` (ties keep input order)."""
    n = len(distance)
    if policy == "hardest_first":
        return -np.asarray(distance, dtype=np.float64)
    if policy == "easiest_first":
        return np.asarray(distance, dtype=np.float64)
    if policy == "random":
        return np.random.default_rng(seed).random(n)
    if policy == "input":
        return np.arange(n, dtype=np.float64)
    raise ValueError(f"unknown SemDeDup order {policy!r}")


def max_earlier_similarity(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows in order: (M_j, argmax i < j), with M_0 = NaN and argmax -1."""
    m = e.shape[0]
    best = np.full(m, np.nan, dtype=np.float32)
    arg = np.full(m, -1, dtype=np.int64)
    for b0 in range(0, m, BLOCK):
        b1 = min(m, b0 + BLOCK)
        if b1 <= 1:
            continue
        sims = np.clip(e[b0:b1] @ e[:b1].T, -1.0, 1.0)
        # Only earlier members count: mask i >= j (the upper triangle of the reference, transposed).
        rows = np.arange(b0, b1)[:, None]
        sims[np.arange(b1)[None, :] >= rows] = -np.inf
        idx = sims.argmax(axis=1)
        val = sims[np.arange(b1 - b0), idx]
        has = np.isfinite(val)
        best[b0:b1][has] = val[has]
        arg[b0:b1][has] = idx[has]
    return best, arg


def semdedup(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    epsilon: float,
    key: np.ndarray | None = None,
) -> SemDeDupResult:
    """Apply SemDeDup to all clusters. ``key`` orders each cluster ascending (see ``order_key``)."""
    n = len(labels)
    key = np.arange(n, dtype=np.float64) if key is None else np.asarray(key, dtype=np.float64)
    order = np.lexsort((np.arange(n), key, labels))  # by cluster, then key, then input position
    remove = np.zeros(n, dtype=bool)
    max_sim = np.full(n, np.nan, dtype=np.float32)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    sorted_labels = labels[order]
    bounds = np.flatnonzero(np.diff(sorted_labels)) + 1
    threshold = 1.0 - epsilon
    for members in np.split(order, bounds):
        if len(members) < 2:
            continue  # singletons are kept
        best, arg = max_earlier_similarity(np.ascontiguousarray(embeddings[members], dtype=np.float32))
        max_sim[members] = best
        has = arg >= 0
        duplicate_of[members[has]] = members[arg[has]]
        remove[members] = np.nan_to_num(best, nan=-np.inf) > threshold
    return SemDeDupResult(remove=remove, max_sim=max_sim, duplicate_of=duplicate_of)
