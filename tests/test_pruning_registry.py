"""Pruning methods are registered by name behind one interface; the report shows example documents."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from pipeline.config.pruning import PruningConfig, PruningMethod as MethodName
from pipeline.pruning import methods
from pipeline.pruning.clusters import StoredClusters
from pipeline.pruning.examples import cluster_examples, kept_fraction_by_domain, pick_clusters
from pipeline.pruning.run import PruningError, decide


def _pool(n: int = 40, k: int = 4, seed: int = 0) -> tuple[StoredClusters, np.ndarray]:
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(k, 8)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    labels = np.arange(n) % k
    x = centroids[labels] + 0.2 * rng.normal(size=(n, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    distance = (1 - (x * centroids[labels]).sum(1)).astype(np.float32)
    pool = StoredClusters(doc_ids=[f"d{i}" for i in range(n)], domains=["a" if i < n // 2 else "b" for i in range(n)],
                          labels=labels, distance=distance, centroids=centroids)
    return pool, x


def test_every_configurable_method_is_registered():
    names = set(typing.get_args(MethodName)) - {"none"}
    assert names == set(methods.REGISTRY) | set(methods.CHAINS)
    assert methods.needs("semdedup+dbp") == {"embeddings"} and methods.needs("seta") == {"losses"}
    with pytest.raises(KeyError, match="unknown pruning method 'nope'"):
        methods.steps("nope")


def test_a_registered_method_is_what_decide_runs(monkeypatch):
    class Shortest(methods.PruningMethod):
        """Keep the ``target`` candidates nearest their centroid."""

        def select(self, c):
            order = np.argsort(c.pool.distance[c.index], kind="stable")
            keep = np.zeros(len(c.index), bool)
            keep[order[: c.target]] = True
            return methods.Selection(keep=keep, reason="nearest", details=["far"] * int((~keep).sum()),
                                     report={"seen": len(c.index)})

    monkeypatch.setitem(methods.REGISTRY, "random", Shortest)
    pool, _ = _pool()
    d = decide(PruningConfig(method="random", target_fraction=0.25), pool, seed=1)
    assert d.keep.sum() == 10 and set(d.reason[~d.keep]) == {"nearest"} and set(d.detail[~d.keep]) == {"far"}
    for domain in ("a", "b"):   # per-domain scope: each group gets its own target
        members = np.flatnonzero(np.array(pool.domains) == domain)
        assert d.keep[members].sum() == 5
        assert set(members[d.keep[members]]) == set(members[np.argsort(pool.distance[members], kind="stable")[:5]])
    assert [g["seen"] for g in d.report["groups"]] == [20, 20]


def test_missing_inputs_are_named():
    pool, _ = _pool()
    with pytest.raises(PruningError, match="semdedup\\+dbp needs the embeddings"):
        decide(PruningConfig(method="semdedup+dbp"), pool, seed=0)
    with pytest.raises(PruningError, match="seta needs per-document losses"):
        decide(PruningConfig(method="seta"), pool, seed=0)


def test_cluster_examples_show_near_and_far_kept_and_dropped():
    pool, x = _pool()
    keep = decide(PruningConfig(method="random", target_fraction=0.5), pool, seed=3).keep
    chosen = pick_clusters(pool, keep, 2)
    assert len(chosen) == 2
    texts = {i: f"text of {i}" for i in pool.doc_ids}
    for entry in cluster_examples(pool, keep, texts, chosen):
        members = np.flatnonzero(pool.labels == entry["cluster"])
        kept = members[keep[members]]
        assert entry["size"] == len(members) and entry["kept"] == len(kept)
        nearest = min(kept, key=lambda i: pool.distance[i])
        farthest = max(kept, key=lambda i: pool.distance[i])
        assert entry["kept_most_representative"][0]["doc_id"] == pool.doc_ids[nearest]
        assert entry["kept_least_representative"][0]["doc_id"] == pool.doc_ids[farthest]
        assert all(not keep[pool.doc_ids.index(doc["doc_id"])] for doc in entry["dropped_most_representative"])
        assert entry["kept_most_representative"][0]["excerpt"] == f"text of {pool.doc_ids[nearest]}"
    assert kept_fraction_by_domain(pool.domains, keep) == {"a": 0.5, "b": 0.5}
