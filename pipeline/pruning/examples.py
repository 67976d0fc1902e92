"""What a concept cluster is, shown by its documents: for a few clusters, the most and least representative
(nearest to / farthest from the centroid) kept and dropped documents, with excerpts; and kept fractions per domain.

Goes into the stage's report (and from there into the ``pruned_documents`` asset's metadata), so a user can
judge what the method kept without opening Parquet files.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from pipeline.pruning.clusters import StoredClusters, StringColumn

EXCERPT_CHARS = 160


def pick_clusters(pool: StoredClusters, keep: np.ndarray, n: int) -> list[int]:
    """The ``n`` largest clusters that have both kept and dropped documents (else the largest)."""
    k = pool.centroids.shape[0]
    sizes = np.bincount(pool.labels, minlength=k)
    kept = np.bincount(pool.labels[keep], minlength=k)
    mixed = [int(c) for c in np.argsort(-sizes, kind="stable") if 0 < kept[c] < sizes[c]]
    rest = [int(c) for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0 and int(c) not in mixed]
    return (mixed + rest)[:n]


def _ends(idx: np.ndarray, distance: np.ndarray, per_side: int) -> tuple[np.ndarray, np.ndarray]:
    """(nearest ``per_side``, farthest ``per_side``) of ``idx`` by distance to the centroid."""
    order = idx[np.argsort(distance[idx], kind="stable")]
    return order[:per_side], order[::-1][:per_side]


def cluster_examples(pool: StoredClusters, keep: np.ndarray, texts: dict[str, str], clusters: list[int], *,
                     per_side: int = 2) -> list[dict]:
    """Per chosen cluster: size, kept count and the representative / outlying kept and dropped documents."""
    out = []
    for c in clusters:
        members = np.flatnonzero(pool.labels == c)
        entry = {"cluster": c, "size": int(len(members)), "kept": int(keep[members].sum())}
        for side, idx in (("kept", members[keep[members]]), ("dropped", members[~keep[members]])):
            near, far = _ends(idx, pool.distance, per_side)
            for label, chosen in (("most_representative", near), ("least_representative", far)):
                entry[f"{side}_{label}"] = [
                    {"doc_id": pool.doc_ids[i], "domain": pool.domains[i], "distance": round(float(pool.distance[i]), 4),
                     "excerpt": " ".join(texts.get(pool.doc_ids[i], "").split())[:EXCERPT_CHARS]} for i in chosen]
        out.append(entry)
    return out


def example_ids(pool: StoredClusters, keep: np.ndarray, clusters: list[int], *, per_side: int = 2) -> set[str]:
    """The doc_ids ``cluster_examples`` will show (so only their texts are read)."""
    ids = set()
    for c in clusters:
        members = np.flatnonzero(pool.labels == c)
        for idx in (members[keep[members]], members[~keep[members]]):
            for chosen in _ends(idx, pool.distance, per_side):
                ids |= {pool.doc_ids[i] for i in chosen}
    return ids


def kept_fraction_by_domain(domains: Sequence[str], keep: np.ndarray) -> dict[str, float]:
    column = domains.series() if isinstance(domains, StringColumn) else pl.Series(list(domains), dtype=pl.String)
    frame = pl.DataFrame({"domain": column, "keep": keep}).group_by("domain").agg(pl.col("keep").mean()).sort("domain")
    return {d: round(float(f), 4) for d, f in frame.iter_rows()}
