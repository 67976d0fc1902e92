"""Curation's global step: exact duplicates, then near duplicates, over every shard's small results.

Reads only what pass 1 wrote (keys, band keys, signature rows on demand), never texts, and works in
DuckDB on disk (sorts, windows and joins spill to ``temp_directory``), so its memory does not grow with
the corpus; the only in-memory arrays are the candidate pairs (documents in shared LSH buckets).

1. Exact: among documents with the same key, the first in the *priority order* survives: the source's
   position in the spec (earlier sources win), then ``source_file``, then ``source_row``. The same order
   numbers the survivors ``gidx = 0, 1, ...``.
2. Near: band keys of surviving documents (only documents that passed their filters have any) -> LSH
   buckets -> candidate pairs (member, bucket head = smallest ``gidx``) -> verified on the signatures
   -> union-find clusters (``minhash.clusters_from_pairs``); each cluster's survivor is its first
   document in the priority order.
3. ``drops.parquet`` (sid, reason, detail, duplicate_of), sorted by ``sid``: every document pass 2 drops
   (exact duplicates, filter drops of survivors, near duplicates), each with the reason written to
   the rejects. Written with ``done.json`` (the fingerprint of pass 1's shards) into one folder renamed
   into place, so a re-run after a crash in pass 2 reuses it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.config.curation import MinHashConfig
from pipeline.curation import minhash as mh
from pipeline.curation.shards import SID_SHIFT
from pipeline.engine.parts import spilling_duckdb
from pipeline.store import atomic_dir

NEAR_DUPLICATE = "near_duplicate"
EXACT_DUPLICATE = "exact_duplicate"
DROPS = "drops.parquet"
DONE = "done.json"
# DuckDB's memory for the global step; beyond it, it spills to disk.
MEMORY_LIMIT = "1GB"


@dataclass(frozen=True)
class DedupSummary:
    fingerprint: str
    documents: int
    unique: int
    near_duplicates: int


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


class SignatureRows:
    """Signature rows by document number, read from the shards' ``signatures.u32`` on demand."""

    def __init__(self, shards: list[Path], num_perm: int):
        self.shards, self.num_perm = shards, num_perm
        self.maps: dict[int, np.ndarray] = {}

    def _map(self, shard: int) -> np.ndarray:
        if shard not in self.maps:
            self.maps[shard] = np.memmap(self.shards[shard] / "signatures.u32", dtype=np.uint32, mode="r").reshape(
                -1, self.num_perm)
        return self.maps[shard]

    def __call__(self, sids: np.ndarray) -> np.ndarray:
        out = np.empty((len(sids), self.num_perm), dtype=np.uint32)
        shard, row = sids >> SID_SHIFT, sids & ((1 << SID_SHIFT) - 1)
        for s in np.unique(shard).tolist():
            here = shard == s
            out[here] = self._map(s)[row[here]]
        return out


def resolve_duplicates(shards: list[Path], *, near: MinHashConfig | None, out: Path, fingerprint: str) -> DedupSummary:
    """Pass 1's shards -> ``out/drops.parquet`` and ``out/done.json``."""
    with atomic_dir(out) as tmp:
        with spilling_duckdb(tmp, database="dedup.duckdb", memory_limit=MEMORY_LIMIT) as con:
            documents, unique = _exact(con, [s / "keys.parquet" for s in shards])
            bands = [s / "bands.parquet" for s in shards if (s / "bands.parquet").exists()]
            n_near = _near(con, shards, bands, near) if near is not None and bands else _no_near(con)
            con.execute(f"""
                COPY (
                  SELECT sid, '{EXACT_DUPLICATE}' AS reason, 'same normalized text as ' || survivor_at AS detail,
                         survivor_id AS duplicate_of
                  FROM ranked WHERE copy_no > 1
                  UNION ALL
                  SELECT sid, reason, detail, NULL::VARCHAR FROM survivors WHERE reason IS NOT NULL
                  UNION ALL
                  SELECT sid, reason, detail, duplicate_of FROM near_drops
                  ORDER BY sid
                ) TO '{tmp / DROPS}' (FORMAT parquet)
            """)
        for name in ("dedup.duckdb", "dedup.duckdb.wal"):
            (tmp / name).unlink(missing_ok=True)
        summary = DedupSummary(fingerprint, documents, unique, n_near)
        (tmp / DONE).write_text(json.dumps(asdict(summary)))
    return summary


def finished_dedup(out: Path, fingerprint: str) -> DedupSummary | None:
    """The global step's result of an earlier run on the same pass-1 inputs, if there is one."""
    try:
        done = json.loads((out / DONE).read_text())
    except (OSError, ValueError):
        return None
    return DedupSummary(**done) if done.get("fingerprint") == fingerprint and (out / DROPS).exists() else None


def _exact(con, keys: list[Path]) -> tuple[int, int]:
    con.execute(f"""
        CREATE TABLE ranked AS
        SELECT sid, doc_id, reason, detail, rank, source, source_file, source_row,
               row_number() OVER w AS copy_no,
               first_value(doc_id) OVER w AS survivor_id,
               first_value(source || ':' || source_file || '#' || source_row) OVER w AS survivor_at
        FROM read_parquet({_sql_list(keys)})
        WINDOW w AS (PARTITION BY k ORDER BY rank, source, source_file, source_row
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    """)
    con.execute("""
        CREATE TABLE survivors AS
        SELECT sid, doc_id, source || ':' || source_file || '#' || source_row AS at, reason, detail,
               row_number() OVER (ORDER BY rank, source, source_file, source_row) - 1 AS gidx
        FROM ranked WHERE copy_no = 1
    """)
    documents = con.execute("SELECT count(*) FROM ranked").fetchone()[0]
    unique = con.execute("SELECT count(*) FROM survivors").fetchone()[0]
    return int(documents), int(unique)


def _no_near(con) -> int:
    con.execute("CREATE TABLE near_drops (sid BIGINT, reason VARCHAR, detail VARCHAR, duplicate_of VARCHAR)")
    return 0


def _near(con, shards: list[Path], bands: list[Path], config: MinHashConfig) -> int:
    con.execute(f"""
        CREATE TABLE nb AS
        SELECT s.gidx, b.band, b.key FROM read_parquet({_sql_list(bands)}) b JOIN survivors s USING (sid)
    """)
    # A star per bucket (member -> its smallest gidx) links the same components as all pairs of the bucket.
    pairs = con.execute("""
        SELECT DISTINCT nb.gidx AS id, h.head
        FROM nb JOIN (SELECT band, key, min(gidx) AS head FROM nb GROUP BY band, key HAVING count(*) > 1) h
             USING (band, key)
        WHERE nb.gidx <> h.head
        ORDER BY id, head
    """).fetchnumpy()
    u, v = pairs["id"].astype(np.int64), pairs["head"].astype(np.int64)
    con.register("nodes", pl.DataFrame({"gidx": np.unique(np.concatenate([u, v]))}).to_arrow())
    lookup = con.execute("SELECT gidx, sid FROM survivors JOIN nodes USING (gidx) ORDER BY gidx").fetchnumpy()
    gidx, sid = lookup["gidx"].astype(np.int64), lookup["sid"].astype(np.int64)
    rows = SignatureRows(shards, config.num_perm)
    clusters = mh.clusters_from_pairs(u, v, lambda ids: rows(sid[np.searchsorted(gidx, ids)]), config)
    con.register("clusters", clusters.to_arrow())
    joined = pl.from_arrow(con.execute("""
        SELECT d.sid, s.doc_id AS survivor, s.at, c.jaccard, c.cluster_size
        FROM clusters c JOIN survivors d ON d.gidx = c.id JOIN survivors s ON s.gidx = c.duplicate_of
        ORDER BY d.sid
    """).to_arrow_table())
    near = joined.select(
        "sid", pl.lit(NEAR_DUPLICATE).alias("reason"),
        pl.format("MinHash cluster of {} documents; estimated Jaccard {} with survivor {}",
                  "cluster_size", pl.col("jaccard").round(3), "at").alias("detail"),
        pl.col("survivor").alias("duplicate_of"))
    con.register("near_frame", near.to_arrow())
    con.execute("CREATE TABLE near_drops AS SELECT * FROM near_frame")
    return near.height
