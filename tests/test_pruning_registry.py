"""Pruning methods are registered by name behind one interface; the report shows example documents."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config.pruning import PruningConfig
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
    # The spec's list of methods is the registry itself (re-pointed from a Literal of names kept by hand).
    names = methods.names()
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


def test_a_method_registered_in_one_file_is_accepted_by_the_spec_and_run(monkeypatch, tmp_path):
    """A new method is one class with ``@register`` (here, this file): the spec accepts its name with no other
    edit, and ``decide`` runs it; an unknown name is refused with the registered names listed."""
    from pipeline.spec import SpecError, spec_from_dict

    monkeypatch.setattr(methods, "REGISTRY", dict(methods.REGISTRY))  # registered for this test only

    @methods.register("farthest_half")
    class FarthestHalf(methods.PruningMethod):
        def select(self, c):
            order = np.argsort(-c.pool.distance[c.index], kind="stable")
            keep = np.zeros(len(c.index), bool)
            keep[order[: c.target]] = True
            return methods.Selection(keep=keep, reason="farthest_half", details=["near"] * int((~keep).sum()))

    (tmp_path / "a.txt").write_text("hello")
    data = {"name": "t", "sources": [{"name": "s", "path": "a.txt", "domain": "d"}],
            "pruning": {"method": "farthest_half", "target_fraction": 0.5}}
    config = spec_from_dict(data, path=tmp_path / "spec.yaml").pruning
    pool, _ = _pool()
    d = decide(config, pool, seed=0)
    assert d.keep.sum() == 20 and set(d.reason[~d.keep]) == {"farthest_half"}
    data["pruning"]["method"] = "farthest"
    with pytest.raises(SpecError, match=r"pruning\.method: unknown pruning method 'farthest' \(registered: .*farthest_half"):
        spec_from_dict(data, path=tmp_path / "spec.yaml")


def test_an_old_spec_with_a_seta_scores_path_loads_with_a_warning(tmp_path):
    """`pruning.seta.scores` is no longer a setting (paths come from the Layout): an old spec still loads, warned."""
    from pipeline.config.pruning import SpecDeprecationWarning
    from pipeline.spec import spec_from_dict

    (tmp_path / "a.txt").write_text("hello")
    data = {"name": "t", "sources": [{"name": "s", "path": "a.txt", "domain": "d"}],
            "pruning": {"method": "seta", "seta": {"scores": "difficulty_scores/scores.parquet", "groups": 4}}}
    with pytest.warns(SpecDeprecationWarning, match="pruning.seta.scores .* is ignored"):
        config = spec_from_dict(data, path=tmp_path / "spec.yaml").pruning
    assert config.seta.groups == 4 and config.seta.scores is None


def test_a_removed_setting_is_neither_listed_by_curamix_defaults_nor_hashed(tmp_path):
    import warnings

    from pipeline.config.pruning import SpecDeprecationWarning
    from pipeline.spec import default_sections, spec_from_dict

    assert "scores" not in default_sections()["pruning"]["seta"]
    (tmp_path / "a.txt").write_text("hello")
    data = {"name": "t", "sources": [{"name": "s", "path": "a.txt", "domain": "d"}], "pruning": {"method": "seta"}}
    plain = spec_from_dict(data, path=tmp_path / "spec.yaml")
    data["pruning"]["seta"] = {"scores": "difficulty_scores/scores.parquet"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecDeprecationWarning)
        old = spec_from_dict(data, path=tmp_path / "spec.yaml")
    assert old.spec_hash == plain.spec_hash


def test_string_column_reads_like_a_list_and_groups_by_sorted_value():
    import pyarrow as pa

    from pipeline.pruning.clusters import StringColumn

    values = ["web", "code", "web", "math", "code"]
    for column in (StringColumn(values), StringColumn(pa.array(values).dictionary_encode())):
        assert list(column) == values and column[3] == "math" and column[1:3] == ["code", "web"]
        assert column.index("math") == 3 and column.take([4, 0]) == ["code", "web"] and column == values
        codes, names = column.codes()
        assert names == ["code", "math", "web"] and [names[c] for c in codes] == values
        assert column.series().to_list() == values
