"""Pruning methods behind one small interface, registered by name.

A method says which of the candidate documents stay, why the others go (``reason``, one ``detail`` per
dropped document) and what it wants in the stage's report. ``scope`` says what it is given: ``"group"``
methods run once per scope group (a domain, or the whole pool) with that group's target; ``"pool"``
methods run once over every candidate (SemDeDup compares documents of a cluster across domains).
A chain (``semdedup+dbp``) runs its steps in order on what the previous step left.

Adding a method: one class here with ``@register("name")`` (or in a module of its own that is imported before
the spec is loaded). The spec accepts every registered name: ``pipeline.config.pruning`` checks
``pruning.method`` against ``names()``, with no list of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from pipeline.pruning.dbp import dbp_select
from pipeline.pruning.semdedup import order_key, semdedup
from pipeline.pruning.ssl_prototypes import random_select, ssl_select

if TYPE_CHECKING:  # numpy only at import: the spec's validation imports this module to list the methods
    from pipeline.config.pruning import PruningConfig
    from pipeline.pruning.clusters import StoredClusters


@dataclass
class Candidates:
    """What a method selects from: ``index`` into the pool (still alive), the target count, the inputs."""

    index: np.ndarray
    target: int
    pool: StoredClusters
    config: PruningConfig
    rng: np.random.Generator
    seed: int
    embeddings: np.ndarray | None = None
    losses: np.ndarray | None = None


@dataclass
class Selection:
    """``keep`` aligned to ``Candidates.index``; ``details`` one per dropped candidate, in index order."""

    keep: np.ndarray
    reason: str
    details: list[str]
    duplicate_of: np.ndarray | None = None   # pool index of the kept original, per dropped candidate
    report: dict = field(default_factory=dict)


class PruningMethod:
    """Select which documents stay. Subclasses set ``scope`` and the inputs they need."""

    scope: ClassVar[str] = "group"
    needs_embeddings: ClassVar[bool] = False
    needs_losses: ClassVar[bool] = False

    def select(self, c: Candidates) -> Selection:
        raise NotImplementedError

    def finish(self, report: dict, pool: StoredClusters, config: PruningConfig) -> None:
        """Add what spans all groups to the stage's report (default: nothing)."""


REGISTRY: dict[str, type[PruningMethod]] = {}
CHAINS: dict[str, tuple[str, ...]] = {}


def register(name: str):
    def wrap(cls: type[PruningMethod]) -> type[PruningMethod]:
        REGISTRY[name] = cls
        return cls
    return wrap


def names() -> set[str]:
    """Every method a spec may name: the registered ones and the chains of them."""
    return set(REGISTRY) | set(CHAINS)


def steps(name: str) -> list[PruningMethod]:
    """Fresh instances of the steps of method ``name`` (one step unless it is a chain)."""
    names = CHAINS.get(name, (name,))
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"unknown pruning method {unknown[0]!r}; known: {sorted(set(REGISTRY) | set(CHAINS))}")
    return [REGISTRY[n]() for n in names]


def needs(name: str) -> set[str]:
    """Which optional inputs ("embeddings", "losses") method ``name`` reads."""
    out = set()
    for step in steps(name):
        out |= {"embeddings"} if step.needs_embeddings else set()
        out |= {"losses"} if step.needs_losses else set()
    return out


def _cluster_details(c: Candidates, gone: np.ndarray) -> list[str]:
    return [f"distance={c.pool.distance[i]:.6f} cluster={c.pool.labels[i]}" for i in gone]


@register("semdedup")
class SemDeDup(PruningMethod):
    """SemDeDup (Abbas et al. 2023): near-duplicates by cosine inside each concept cluster."""

    scope = "pool"
    needs_embeddings = True

    def select(self, c: Candidates) -> Selection:
        cfg, pool = c.config.semdedup, c.pool
        key = order_key(cfg.order, distance=pool.distance, seed=c.seed)
        sd = semdedup(c.embeddings, pool.labels, epsilon=cfg.epsilon, key=key)
        keep = ~sd.remove[c.index]
        gone = c.index[~keep]
        return Selection(keep=keep, reason="semdedup", details=[f"max_cos={sd.max_sim[i]:.6f}" for i in gone],
                         duplicate_of=sd.duplicate_of[gone],
                         report={"epsilon": cfg.epsilon, "order": cfg.order, "removed": int(len(gone))})


@register("dbp")
class DBP(PruningMethod):
    """Density-based pruning (Abbas et al. 2024): complexity-weighted per-cluster budgets."""

    def __init__(self):
        self.budget_total: np.ndarray | None = None

    def select(self, c: Candidates) -> Selection:
        pool, cfg = c.pool, c.config.dbp
        k = pool.centroids.shape[0]
        res = dbp_select(pool.labels[c.index], pool.distance[c.index], pool.centroids, target=c.target,
                         tau=cfg.tau, l=cfg.l, balance=cfg.balance)
        self.budget_total = (self.budget_total if self.budget_total is not None else np.zeros(k, np.int64)) + res.budgets
        sizes = res.complexity.sizes
        kept_per = np.bincount(pool.labels[c.index[res.keep]], minlength=k)
        return Selection(keep=res.keep, reason="dbp", details=_cluster_details(c, c.index[~res.keep]), report={
            "budget_sum": int(res.budgets.sum()), "budgets_within_caps": bool((res.budgets <= sizes).all()),
            "kept_equals_budgets": bool((kept_per == res.budgets).all()),
            "budget_target": int(min(c.target, len(c.index))),
            "_complexity": {"sizes": sizes.tolist(), "d_intra": floats(res.complexity.d_intra),
                            "d_inter": floats(res.complexity.d_inter), "complexity": floats(res.complexity.complexity),
                            "share": floats(res.complexity.share), "budget": res.budgets.tolist()}})

    def finish(self, report: dict, pool: StoredClusters, config: PruningConfig) -> None:
        for entry in report["groups"]:
            if "_complexity" in entry:
                report.setdefault("per_group_complexity", {})[entry["group"]] = entry.pop("_complexity")
        budget = self.budget_total if self.budget_total is not None else np.zeros(pool.centroids.shape[0], np.int64)
        report["clusters"] = global_complexity(pool, config) | {"budget": budget.tolist()}


@register("ssl")
class SSLPrototypes(PruningMethod):
    """SSL prototypes (Sorscher et al. 2022): per-cluster share of the hardest (or easiest) examples."""

    def select(self, c: Candidates) -> Selection:
        keep, quotas = ssl_select(c.pool.labels[c.index], c.pool.distance[c.index], target=c.target,
                                  keep=c.config.ssl.keep)
        return Selection(keep=keep, reason="ssl_prototypes", details=_cluster_details(c, c.index[~keep]),
                         report={"quota_sum": int(quotas.sum())})


@register("random")
class RandomSubset(PruningMethod):
    """A uniform random subset of the target size (the baseline every method must beat)."""

    def select(self, c: Candidates) -> Selection:
        keep = random_select(len(c.index), target=c.target, rng=c.rng)
        return Selection(keep=keep, reason="random", details=["uniform random subset"] * int((~keep).sum()))


@register("seta")
class SeTa(PruningMethod):
    """SeTa's static form (Zhou et al. 2025) on per-document proxy losses."""

    needs_losses = True

    def select(self, c: Candidates) -> Selection:
        from pipeline.pruning.seta import seta_static  # imports torch (the sampler)

        cfg = c.config.seta
        losses = c.losses[c.index]
        st = seta_static(losses, target=c.target, groups=cfg.groups, window_scale=cfg.window_scale,
                         window_start=cfg.window_start, rng=c.rng)
        gone = np.flatnonzero(~st.keep)
        return Selection(keep=st.keep, reason="seta", details=[
            f"loss={losses[p]:.6f} group={st.group[p]} window={st.window[0]}-{st.window[1]}" for p in gone], report={
            "window": list(st.window), "group_means": floats(np.array(st.group_means)),
            "group_sizes": st.group_sizes, "filled_from": st.filled_from})


# SemDeDup first, then DBP on the survivors (the target stays a fraction of the pool before SemDeDup).
CHAINS["semdedup+dbp"] = ("semdedup", "dbp")


def floats(a: np.ndarray) -> list:
    return [None if not np.isfinite(v) else round(float(v), 6) for v in np.asarray(a, dtype=np.float64)]


def global_complexity(pool: StoredClusters, config: PruningConfig) -> dict:
    from pipeline.pruning.dbp import cluster_complexity

    cx = cluster_complexity(pool.labels, pool.distance, pool.centroids, l=config.dbp.l, tau=config.dbp.tau)
    return {"sizes": cx.sizes.tolist(), "d_intra": floats(cx.d_intra), "d_inter": floats(cx.d_inter),
            "complexity": floats(cx.complexity), "share": floats(cx.share)}
