"""SSL prototypes (Sorscher et al. 2022, "Beyond neural scaling laws") and the random baseline.

SSL prototypes: k-means on self-supervised embeddings; a document's difficulty is its distance to
the nearest centroid (our concept clusters' ``distance``). Keep the hardest (farthest) when data is
abundant, the easiest when scarce. The paper keeps round(f * n_c) per cluster; we round the
per-cluster quotas f * n_c by largest remainder instead, so that the total is exactly the target and
the comparison with other methods is at the same size (each quota still differs from f * n_c by
less than one document).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from pipeline.pruning.dbp import round_budgets, within_cluster_rank


def ssl_quotas(labels: np.ndarray, *, target: int, k: int | None = None) -> np.ndarray:
    k = int(labels.max()) + 1 if k is None else k
    sizes = np.bincount(labels, minlength=k).astype(np.int64)
    n = int(sizes.sum())
    fraction = min(1.0, target / n) if n else 0.0
    return round_budgets(sizes * fraction, target, sizes)


def ssl_select(labels: np.ndarray, distance: np.ndarray, *, target: int,
               keep: Literal["hard", "easy"] = "hard") -> tuple[np.ndarray, np.ndarray]:
    """(keep mask, per-cluster quotas): the quota of the farthest (hard) or nearest (easy) per cluster."""
    quotas = ssl_quotas(labels, target=target)
    rank = within_cluster_rank(labels, distance, descending=(keep == "hard"))
    return rank < quotas[labels], quotas


def random_select(n: int, *, target: int, rng: np.random.Generator) -> np.ndarray:
    """A uniform random subset of ``min(target, n)`` documents."""
    keep = np.zeros(n, dtype=bool)
    keep[rng.choice(n, size=min(target, n), replace=False)] = True
    return keep
