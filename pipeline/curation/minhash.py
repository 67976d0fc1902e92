"""MinHash-LSH near-duplicate detection, vectorized with NumPy.

Semantics follow Broder (1997) for MinHash and Leskovec et al. ("Mining of Massive Datasets", ch. 3)
for banding: a document is the set of its n-gram shingles; permutation ``j`` is the hash
``h_j(x) = (a_j * x + b_j) >> 32`` over 64-bit shingle hashes (multiply-add-shift, Dietzfelbinger
1996, a universal family), and the signature keeps the minimum per permutation. Two documents become
a candidate pair when all ``rows`` values of one of ``bands`` bands agree. Unlike DataTrove, which
takes every candidate pair as a duplicate, we (optionally) verify each pair: the fraction of equal
signature entries is an unbiased estimate of the Jaccard similarity, and a pair is kept only if it
reaches ``threshold``. That lets the banding sit at a low S-curve midpoint for recall without giving
up precision. Clusters are the connected components of verified pairs (a vectorized union-find),
and the survivor of each cluster is the member that comes first in the global priority order.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.config.curation import MinHashConfig
from pipeline.curation.hashes import mix64
from pipeline.curation.normalize import minhash_chars, minhash_words

MAX_U32 = np.uint32(0xFFFFFFFF)
_SHIFT = np.uint64(32)


def _odd_constants(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def token_hashes(texts: pl.Series, config: MinHashConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash every normalized token (a word, or a character for char shingles) of every document.

    Returns ``(hashes uint64, doc int64)`` in document order, tokens in text order.
    """
    frame = pl.DataFrame({"text": texts.cast(pl.String)})
    if config.shingle == "word":
        tokens = frame.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("doc"),
                              minhash_words(pl.col("text"), config).alias("tok"))
    else:
        tokens = frame.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("doc"),
                              minhash_chars(pl.col("text"), config).str.split("").alias("tok"))
    tokens = tokens.explode("tok").drop_nulls("tok").filter(pl.col("tok") != "")
    hashes = tokens["tok"].hash(seed=seed & 0xFFFFFFFF, seed_1=1, seed_2=2, seed_3=3).to_numpy()
    return hashes, tokens["doc"].to_numpy()


def ngram_hashes(tokens: np.ndarray, doc: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Order-sensitive hashes of every n-gram of consecutive tokens inside one document.

    A document shorter than ``n`` tokens yields one shingle of all its tokens, so short texts still
    get a signature. Returns ``(shingles uint64, doc int64)``.
    """
    size = len(tokens)
    if size == 0:
        return tokens.astype(np.uint64), doc
    weights = _odd_constants(seed, n)
    combined = tokens * weights[0]
    for k in range(1, n):
        same = doc[k:] == doc[:-k]
        combined[:-k] += np.where(same, tokens[k:] * weights[k], np.uint64(0))
    starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
    lengths = np.diff(np.r_[starts, size])
    doc_start = np.repeat(starts, lengths)
    doc_len = np.repeat(lengths, lengths)
    pos = np.arange(size) - doc_start
    valid = (pos + n <= doc_len) | ((doc_len < n) & (pos == 0))
    return mix64(combined[valid]), doc[valid]


def shingles(texts: pl.Series, config: MinHashConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    tokens, doc = token_hashes(texts, config, seed)
    return ngram_hashes(tokens, doc, config.ngram, seed + 1)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def signatures(
    hashes: np.ndarray, doc: np.ndarray, n_docs: int, *, num_perm: int, seed: int, chunk: int = 1 << 13
) -> np.ndarray:
    """MinHash signatures ``uint32[n_docs, num_perm]``; a document without shingles keeps MAX_U32.

    Shingles are processed ``chunk`` at a time with in-place arithmetic, so the transient memory is
    one ``chunk x num_perm`` uint64 block (6.5 MB at the defaults) whatever the batch size.
    """
    a, b = permutations(num_perm, seed)
    sig = np.full((n_docs, num_perm), MAX_U32, dtype=np.uint32)
    for lo in range(0, len(hashes), chunk):
        h = hashes[lo:lo + chunk]
        d = doc[lo:lo + chunk]
        permuted = np.multiply.outer(h, a)
        permuted += b
        permuted >>= _SHIFT
        starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
        mins = np.minimum.reduceat(permuted, starts, axis=0).astype(np.uint32)
        owners = d[starts]  # a document spans chunks at most at their edges: combine with what is there
        sig[owners] = np.minimum(sig[owners], mins)
    return sig


def band_keys(sig: np.ndarray, *, bands: int, rows: int, seed: int) -> np.ndarray:
    """One uint64 key per (document, band): a hash of that band's ``rows`` signature values."""
    weights = _odd_constants(seed, rows)
    keys = np.empty((sig.shape[0], bands), dtype=np.uint64)
    wide = sig.astype(np.uint64)
    for band in range(bands):
        block = wide[:, band * rows:(band + 1) * rows]
        keys[:, band] = mix64((block * weights[None, :]).sum(axis=1, dtype=np.uint64) + np.uint64(band))
    return keys


def bands_frame(ids: np.ndarray, keys: np.ndarray) -> pl.DataFrame:
    """Long table (id, band, key) for the bucket join."""
    n, bands = keys.shape
    return pl.DataFrame({
        "id": np.repeat(ids.astype(np.int64), bands),
        "band": np.tile(np.arange(bands, dtype=np.int16), n),
        "key": keys.reshape(-1),
    })


def candidate_pairs(bands: pl.LazyFrame) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (member, bucket head) for every LSH bucket holding more than one document.

    The head is the bucket's smallest id; linking each member to it (a star) gives the same connected
    components as all pairs of the bucket, with linear instead of quadratic size. Runs on the polars
    streaming engine, so the band table may be larger than memory.
    """
    heads = (
        bands.group_by("band", "key")
        .agg(pl.col("id").min().alias("head"), pl.len().alias("size"))
        .filter(pl.col("size") > 1)
    )
    pairs = (
        bands.join(heads, on=["band", "key"])
        .filter(pl.col("id") != pl.col("head"))
        .select("id", "head")
        .unique()
        .sort("id", "head")
        .collect(engine="streaming")
    )
    return pairs["id"].to_numpy(), pairs["head"].to_numpy()


def estimated_jaccard(sig_u: np.ndarray, sig_v: np.ndarray) -> np.ndarray:
    return (sig_u == sig_v).mean(axis=1)


def union_find(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the graph with edges (u, v), vectorized.

    Union by minimum: each union hooks the larger root under the smaller, and full path compression
    (pointer jumping) runs after every round, so a parent is never larger than its child and the
    root of a component is its smallest id. Returns ``(nodes, roots)`` for every node on an edge.
    """
    if len(u) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    nodes, inverse = np.unique(np.concatenate([u, v]), return_inverse=True)
    a, b = inverse[: len(u)], inverse[len(u):]
    parent = np.arange(len(nodes))

    def compress(p: np.ndarray) -> np.ndarray:
        while True:
            nxt = p[p]
            if np.array_equal(nxt, p):
                return p
            p = nxt

    while True:
        ra, rb = parent[a], parent[b]
        lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
        open_ = lo != hi
        if not open_.any():
            break
        np.minimum.at(parent, hi[open_], lo[open_])
        parent = compress(parent)
    return nodes, nodes[parent]


def near_duplicates(
    ids: np.ndarray, sig: np.ndarray, config: MinHashConfig, *, seed: int, bands_lazy: pl.LazyFrame | None = None
) -> pl.DataFrame:
    """In-memory convenience: ids (priority order = survivor order) and their signatures ->
    a frame (id, duplicate_of, jaccard) of the documents to drop, one survivor per cluster."""
    keys = band_keys(sig, bands=config.bands, rows=config.rows, seed=seed)
    frame = bands_lazy if bands_lazy is not None else bands_frame(ids, keys).lazy()
    lookup = _RowLookup(ids)
    return resolve_clusters(frame, lambda x: sig[lookup(x)], config)


class _RowLookup:
    def __init__(self, ids: np.ndarray):
        self.order = np.argsort(ids, kind="stable")
        self.sorted = ids[self.order]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.order[np.searchsorted(self.sorted, x)]


def resolve_clusters(bands: pl.LazyFrame, signature_of, config: MinHashConfig) -> pl.DataFrame:
    """Candidate pairs -> verified pairs -> clusters -> (id, duplicate_of, jaccard, cluster_size).

    ``signature_of(ids)`` returns the signature rows of ``ids`` (from memory or a memory map).
    """
    u, v = candidate_pairs(bands)
    return clusters_from_pairs(u, v, signature_of, config)


def clusters_from_pairs(u: np.ndarray, v: np.ndarray, signature_of, config: MinHashConfig) -> pl.DataFrame:
    """Candidate pairs (member, bucket head) -> verified pairs -> clusters ->
    (id, duplicate_of, jaccard, cluster_size); the survivor of a cluster is its smallest id."""
    if config.verify and len(u):
        keep = np.zeros(len(u), dtype=bool)
        for lo in range(0, len(u), 1 << 16):
            hi = lo + (1 << 16)
            keep[lo:hi] = estimated_jaccard(signature_of(u[lo:hi]), signature_of(v[lo:hi])) >= config.threshold
        u, v = u[keep], v[keep]
    nodes, roots = union_find(u, v)
    drop = nodes != roots
    dropped, survivors = nodes[drop], roots[drop]
    sizes = np.unique(roots, return_counts=True)
    size_of = dict(zip(sizes[0].tolist(), sizes[1].tolist()))
    jaccard = np.empty(len(dropped))
    for lo in range(0, len(dropped), 1 << 16):
        hi = lo + (1 << 16)
        jaccard[lo:hi] = estimated_jaccard(signature_of(dropped[lo:hi]), signature_of(survivors[lo:hi]))
    return pl.DataFrame({
        "id": dropped.astype(np.int64),
        "duplicate_of": survivors.astype(np.int64),
        "jaccard": jaccard,
        "cluster_size": np.array([size_of[r] for r in survivors.tolist()], dtype=np.int64),
    })
