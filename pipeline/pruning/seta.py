"""SeTa (Zhou et al., "Scale Efficient Training for Large Datasets", CVPR 2025; mrazhou/SeTa).

Dynamic form (``SeTaSampler``, for training jobs). Per-sample score = the last observed loss
(initially 3.0 for all; no EMA; unseen samples keep stale scores). Each epoch t (from 0), with
keep = clamp(1 - prune_ratio, 0.1, 1):
1. random thinning: a random subset of int(N * keep) indices;
2. 1-D k-means (k groups) on the subset's scores, groups ordered by mean loss, easy first; when all
   scores are equal (epoch 0) the subset is split into k chunks instead;
3. window width w = round(k * window_scale) (Python rounding, half to even), start = t mod (k - w + 1),
   keep groups [start, start + w); at t = 0 keep all groups;
4. shuffle the kept indices; no loss re-weighting.
So k = 5, scale 0.6 sweeps [1-3], [2-4], [0-2], [1-3], ... Annealing: epochs t >= num_epochs * 0.875
use random thinning only (all groups). We read "epochs after num_epochs * 0.875" as t >= that value,
which gives InfoBatch's "last 12.5% of epochs" (the last epoch of 8).

InfoBatch (Qin et al. 2024) is an option of the same sampler: each epoch, well-learned samples
(score < mean score) are thinned to a random int(r * count) of them, r = 1 - prune_ratio, and their
loss weighted 1 / r; all data, weight 1, in the last 12.5% of epochs.

Our 1-D k-means is Lloyd's algorithm seeded at the k evenly spaced quantiles (deterministic; the
reference uses a randomly seeded k-means, whose groups are the same intervals up to local optima).

Static form (``seta_static``, the pruning metric): score documents with a trained proxy, split the
losses into k groups (easy -> hard), keep the window's groups (width and position from the spec;
default centred: drop the easiest and the hardest) and thin them uniformly at random to the target.
Thinning uniformly before or after choosing the window gives the same distribution (the thinning is
independent of the scores); thinning last lets the result hit the target exactly. When the window
holds fewer documents than the target, it grows by the adjacent group whose mean loss is closest
to the window's, filled at random (recorded in the result).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Sampler

from pipeline.pruning.ssl_prototypes import random_select


def window_width(groups: int, window_scale: float) -> int:
    return max(1, min(groups, round(groups * window_scale)))


def kmeans_1d(values: np.ndarray, k: int, *, max_iter: int = 100) -> np.ndarray:
    """Group id per value (0 = lowest mean), Lloyd iterations from quantile seeds."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    centers = np.unique(np.quantile(values, (np.arange(k) + 0.5) / k))
    for _ in range(max_iter):
        # In 1-D the nearest center is found from the midpoints between sorted centers.
        groups = np.searchsorted((centers[1:] + centers[:-1]) / 2, values, side="right")
        sums = np.bincount(groups, weights=values, minlength=len(centers))
        counts = np.bincount(groups, minlength=len(centers))
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centers)
        new = np.unique(new[counts > 0])
        if len(new) == len(centers) and np.allclose(new, centers, rtol=0, atol=1e-12):
            break
        centers = new
    return np.searchsorted((centers[1:] + centers[:-1]) / 2, values, side="right").astype(np.int64)


def loss_groups(scores: np.ndarray, k: int) -> np.ndarray:
    """Easy-to-hard group ids; equal scores (no signal yet) are split into k chunks in the given order."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) and np.all(scores == scores[0]):
        return np.minimum(np.arange(len(scores)) * k // max(len(scores), 1), k - 1).astype(np.int64)
    return kmeans_1d(scores, k)


@dataclass(frozen=True)
class Window:
    phase: Literal["warmup", "window", "anneal"]
    start: int
    width: int

    @property
    def groups(self) -> range:
        return range(self.start, self.start + self.width)


def window_for_epoch(epoch: int, *, groups: int, window_scale: float, num_epochs: int,
                     anneal: float = 0.875) -> Window:
    """The groups SeTa keeps in ``epoch`` (all of them at t = 0 and while annealing)."""
    if epoch == 0:
        return Window("warmup", 0, groups)
    if epoch >= num_epochs * anneal:
        return Window("anneal", 0, groups)
    width = window_width(groups, window_scale)
    return Window("window", epoch % (groups - width + 1), width)


def random_thinning(n: int, keep: float, rng: np.random.Generator) -> np.ndarray:
    """SeTa step 1: a random subset of int(n * keep) indices (in random order)."""
    return rng.choice(n, size=int(n * keep), replace=False)


@dataclass
class EpochPlan:
    epoch: int
    indices: np.ndarray   # int64, shuffled
    weights: np.ndarray   # float64 per entry of ``indices`` (1 for SeTa)
    window: Window | None


class SeTaSampler(Sampler[int]):
    """Per-epoch SeTa (or InfoBatch) selection over a dataset of ``num_samples`` items.

    Usage in a training loop (the dataset yields its own index with each item)::

        sampler = SeTaSampler(len(ds), num_epochs=E, prune_ratio=0.3)
        loader = DataLoader(ds, batch_size=B, sampler=sampler)
        for epoch in range(E):
            sampler.set_epoch(epoch)
            for idx, x, y in loader:
                losses = criterion(model(x), y, reduction="none")
                sampler.update(idx, losses)
                (losses * sampler.weights_for(idx).to(losses.device)).mean().backward()

    ``set_epoch`` is optional: each pass over the sampler advances the epoch by one.
    """

    def __init__(self, num_samples: int, *, num_epochs: int, prune_ratio: float = 0.3, groups: int = 5,
                 window_scale: float = 0.6, anneal: float = 0.875, initial_score: float = 3.0,
                 method: Literal["seta", "infobatch"] = "seta", seed: int = 0):
        if method not in ("seta", "infobatch"):
            raise ValueError(f"method must be 'seta' or 'infobatch', got {method!r}")
        self.num_samples = num_samples
        self.num_epochs = num_epochs
        self.prune_ratio = prune_ratio
        self.groups = groups
        self.window_scale = window_scale
        self.anneal = anneal
        self.method = method
        self.seed = seed
        self.scores = np.full(num_samples, float(initial_score))
        self._weights = np.ones(num_samples)
        self.epoch = 0
        self._cached: EpochPlan | None = None
        self.last_plan: EpochPlan | None = None

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._cached = None
        self.epoch = epoch

    def update(self, indices: torch.Tensor | Sequence[int] | np.ndarray,
               losses: torch.Tensor | Sequence[float] | np.ndarray) -> None:
        """Record the last observed per-sample losses (overwrites; no averaging)."""
        idx = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
        val = losses.detach().float().cpu().numpy() if isinstance(losses, torch.Tensor) else np.asarray(losses)
        self.scores[idx.astype(np.int64).reshape(-1)] = val.reshape(-1)
        self._cached = None

    def weights_for(self, indices: torch.Tensor | Sequence[int] | np.ndarray) -> torch.Tensor:
        """Loss weights of these samples in the current epoch (1 for SeTa; 1/r for InfoBatch's kept)."""
        idx = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
        return torch.from_numpy(self._weights[idx.astype(np.int64)]).float()

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])

    def plan(self, epoch: int) -> EpochPlan:
        if self._cached is not None and self._cached.epoch == epoch:
            return self._cached
        rng = self._rng(epoch)
        plan = self._plan_seta(epoch, rng) if self.method == "seta" else self._plan_infobatch(epoch, rng)
        self._cached = plan
        return plan

    def _plan_seta(self, epoch: int, rng: np.random.Generator) -> EpochPlan:
        keep = min(1.0, max(0.1, 1.0 - self.prune_ratio))
        subset = random_thinning(self.num_samples, keep, rng)
        window = window_for_epoch(epoch, groups=self.groups, window_scale=self.window_scale,
                                  num_epochs=self.num_epochs, anneal=self.anneal)
        if window.phase == "window":
            g = loss_groups(self.scores[subset], self.groups)
            subset = subset[(g >= window.start) & (g < window.start + window.width)]
        kept = rng.permutation(subset)
        return EpochPlan(epoch, kept.astype(np.int64), np.ones(len(kept)), window)

    def _plan_infobatch(self, epoch: int, rng: np.random.Generator) -> EpochPlan:
        n = self.num_samples
        if epoch >= self.num_epochs * self.anneal:
            kept = rng.permutation(n)
            return EpochPlan(epoch, kept, np.ones(n), Window("anneal", 0, 1))
        r = min(1.0, max(1e-6, 1.0 - self.prune_ratio))
        well_learned = self.scores < self.scores.mean()
        easy = np.flatnonzero(well_learned)
        chosen = rng.choice(easy, size=int(r * len(easy)), replace=False) if r < 1.0 else easy
        kept = rng.permutation(np.concatenate([np.flatnonzero(~well_learned), chosen]))
        weights = np.where(well_learned[kept], 1.0 / r, 1.0)
        return EpochPlan(epoch, kept.astype(np.int64), weights, None)

    def __iter__(self):
        plan = self.plan(self.epoch)
        self._weights = np.ones(self.num_samples)
        self._weights[plan.indices] = plan.weights
        self.last_plan = plan
        self.epoch += 1
        self._cached = None
        yield from plan.indices.tolist()

    def __len__(self) -> int:
        return len(self.plan(self.epoch).indices)


@dataclass
class SeTaStatic:
    keep: np.ndarray       # bool (n,)
    group: np.ndarray      # int64 (n,), 0 = easiest
    window: tuple[int, int]  # (first, last) group of the final window, inclusive
    group_means: list[float]
    group_sizes: list[int]
    filled_from: list[int]   # groups added next to the window to reach the target


def seta_static(losses: np.ndarray, *, target: int, groups: int = 5, window_scale: float = 0.6,
                window_start: int | None = None, rng: np.random.Generator) -> SeTaStatic:
    """Static SeTa on per-document losses: loss groups, window, uniform thinning to ``target``."""
    losses = np.asarray(losses, dtype=np.float64)
    n = len(losses)
    group = loss_groups(losses, groups)
    width = window_width(groups, window_scale)
    start = (groups - width) // 2 if window_start is None else window_start
    lo, hi = start, start + width - 1
    sizes = np.bincount(group, minlength=groups)
    means = [float(losses[group == g].mean()) if sizes[g] else float("nan") for g in range(groups)]
    in_window = (group >= lo) & (group <= hi)
    keep = np.zeros(n, dtype=bool)
    target = min(target, n)
    filled: list[int] = []
    if in_window.sum() >= target:
        eligible = np.flatnonzero(in_window)
        keep[eligible[random_select(len(eligible), target=target, rng=rng)]] = True
    else:
        keep[in_window] = True
        while keep.sum() < target:
            centre = losses[keep].mean() if keep.any() else float(np.median(losses))
            options = [g for g in (lo - 1, hi + 1) if 0 <= g < groups]
            g = min(options, key=lambda c: abs(means[c] - centre) if sizes[c] else np.inf)
            lo, hi = min(lo, g), max(hi, g)
            filled.append(g)
            members = np.flatnonzero(group == g)
            need = target - int(keep.sum())
            keep[members[random_select(len(members), target=need, rng=rng)]] = True
    return SeTaStatic(keep=keep, group=group, window=(lo, hi), group_means=means,
                      group_sizes=sizes.tolist(), filled_from=filled)
