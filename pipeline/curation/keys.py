"""Curation, pass 1 (sharded): what each document is, as far as deduplication and the filters care.

For every staged document of its run, a shard writes

- ``keys.parquet``: its number (``sid``), where it comes from, its exact-dedup key (the MD5 of the
  normalized text, computed by DuckDB with the same SQL as ever) and its quality-filter verdict;
- ``signatures.u32``: for domains that take part in near dedup, one MinHash signature row per document
  (documents that a filter drops, or without a token, keep the all-ones row and never match);
- ``bands.parquet``: the LSH band keys of the documents that have a signature.

Every value is a function of the document's text and the spec alone (MinHash permutations come from
the stage's one seed, shared by all shards: signatures of two shards must be comparable), so a shard's
files do not depend on where or with what it ran. ``finish`` is the global step (``dedup``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config.curation import CurationConfig
from pipeline.curation import minhash as mh
from pipeline.curation.dedup import DedupSummary, resolve_duplicates
from pipeline.curation.filters import apply_filters, filters_for
from pipeline.curation.normalize import exact_key_sql
from pipeline.curation.shards import SID_SHIFT, Run, run_batches
from pipeline.engine import ShardTask, shard_dir
from pipeline.store import DataRoot

STAGE = "curated"
KEYS_SCHEMA = pa.schema([("sid", pa.int64()), ("domain", pa.string()), ("rank", pa.int32()), ("source", pa.string()),
                         ("source_file", pa.string()), ("source_row", pa.int64()), ("doc_id", pa.string()),
                         ("k", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
BANDS_SCHEMA = pa.schema([("sid", pa.int64()), ("band", pa.int16()), ("key", pa.uint64())])
_COLUMNS = ["source", "source_file", "source_row", "doc_id", "text"]


@dataclass(frozen=True)
class Seeds:
    tokens: int
    ngrams: int
    permutations: int
    bands: int

    @classmethod
    def from_base(cls, base: int) -> Seeds:
        return cls(base, base + 1, base + 2, base + 3)


@dataclass(frozen=True)
class KeySettings:
    run: Run
    index: int  # the run's position in the plan: its documents are numbered from ``index << SID_SHIFT``
    source_rank: dict[str, int]
    config: CurationConfig


@dataclass
class KeysStage:
    root: DataRoot
    runs: list[Run]
    source_rank: dict[str, int]
    config: CurationConfig
    seed: int  # the MinHash seed of the whole stage (``Seeds.from_base``)
    name: str = "curation-keys"
    version: str = "curation-keys-1"

    @property
    def work_dir(self) -> Path:
        return self.root.layout.stage_work(STAGE, "keys")

    @property
    def dedup_dir(self) -> Path:
        return self.root.layout.stage_work(STAGE, "dedup")

    def plan(self) -> list[ShardTask]:
        return [ShardTask(key=run.key, inputs=run.files, settings=KeySettings(run, i, self.source_rank, self.config),
                          seed=self.seed) for i, run in enumerate(self.runs)]

    def fingerprint(self) -> str:
        """What the global step's result depends on: every shard's fingerprint, in plan order."""
        parts = [t.fingerprint(self.name, self.version) for t in self.plan()]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def run_shard(self, task: ShardTask, out: Path) -> dict:
        settings: KeySettings = task.settings
        return write_keys(settings, Seeds.from_base(task.seed), out)

    def finish(self, results: list[dict]) -> DedupSummary:
        near = self.config.near_dedup if self.config.near_dedup.enabled else None
        return resolve_duplicates([shard_dir(self, t.key) for t in self.plan()], near=near, out=self.dedup_dir,
                                  fingerprint=self.fingerprint())


def write_keys(settings: KeySettings, seeds: Seeds, out: Path) -> dict:
    config, run = settings.config, settings.run
    resolved = config.for_domain(run.domain)
    chain = filters_for(resolved) if config.filters_enabled else []
    near = config.near_dedup if config.near_dedup.enabled and resolved.near_dedup else None
    first_sid = settings.index << SID_SHIFT
    rank = settings.source_rank
    con = duckdb.connect()
    con.execute("SET threads = 1")  # a shard is one worker's work: one core
    key_sql = exact_key_sql("text", config.exact_dedup)
    keys = pq.ParquetWriter(out / "keys.parquet", KEYS_SCHEMA)
    bands = pq.ParquetWriter(out / "bands.parquet", BANDS_SCHEMA) if near else None
    signatures = open(out / "signatures.u32", "wb") if near else None
    rows = filtered = signed = 0
    try:
        for frame in run_batches(run, _COLUMNS, config.batch_bytes):
            sids = np.arange(first_sid + rows, first_sid + rows + frame.height, dtype=np.int64)
            rows += frame.height
            if config.exact_dedup.enabled:
                con.register("batch", frame.select("text").to_arrow())
                k = con.execute(f"SELECT {key_sql} AS k FROM batch").to_arrow_table().column("k")
                con.unregister("batch")
            else:  # every document its own key: the same code path then only numbers documents
                k = pa.array(sids.astype(str))
            verdict = apply_filters(frame["text"], chain)
            filtered += int(verdict["reason"].is_not_null().sum())
            keys.write_table(pa.table({
                "sid": sids, "domain": [run.domain] * frame.height,
                "rank": pa.array([rank.get(s, len(rank)) for s in frame["source"].to_list()], pa.int32()),
                "source": frame["source"].to_arrow(), "source_file": frame["source_file"].to_arrow(),
                "source_row": frame["source_row"].to_arrow(), "doc_id": frame["doc_id"].to_arrow(), "k": k,
                "reason": verdict["reason"].to_arrow(), "detail": verdict["detail"].to_arrow(),
            }).cast(KEYS_SCHEMA))
            if near:
                signed += _sign(frame["text"], verdict["reason"].is_null().to_numpy(), sids, near, seeds,
                                signatures, bands)
    finally:
        con.close()
        keys.close()
        if bands is not None:
            bands.close()
            signatures.close()
    return {"domain": run.domain, "rows": rows, "filtered": filtered, "signed": signed}


def _sign(texts, keep: np.ndarray, sids: np.ndarray, near, seeds: Seeds, signatures, bands) -> int:
    """Append the batch's signature rows (every document) and the band keys of those with a signature."""
    block = np.full((len(sids), near.num_perm), mh.MAX_U32, dtype=np.uint32)
    n_signed = 0
    if keep.any():
        hashes, doc = mh.token_hashes(texts.filter(keep), near, seeds.tokens)
        hashes, doc = mh.ngram_hashes(hashes, doc, near.ngram, seeds.ngrams)
        sig = mh.signatures(hashes, doc, int(keep.sum()), num_perm=near.num_perm, seed=seeds.permutations)
        block[keep] = sig
        has = np.zeros(len(sig), dtype=bool)
        has[doc] = True  # a document without a single token has no signature and never matches
        band_keys = mh.band_keys(sig[has], bands=near.bands, rows=near.rows, seed=seeds.bands)
        frame = mh.bands_frame(sids[keep][has], band_keys).rename({"id": "sid"})
        bands.write_table(frame.to_arrow().cast(BANDS_SCHEMA))
        n_signed = int(has.sum())
    signatures.write(block.tobytes())
    return n_signed
