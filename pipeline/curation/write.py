"""Curation, pass 2 (sharded): each run's kept documents and rejects, then every domain assembled.

A shard reads its run's documents again (a batch at a time) and the global step's drops for its
document numbers, and writes ``kept.parquet`` (the documents that stay, one row group per batch, so a
row group holds about ``curation.batch_bytes`` of text whatever the corpus size) and
``rejects.parquet`` (every drop with its reason, detail, ``duplicate_of`` and an excerpt). ``finish``
moves the kept parts into ``curated/domain=<d>/data/part-<run>.parquet`` (hard links: the run number
keeps the priority order), concatenates the rejects and writes ``stats.json``, one domain at a time,
each domain's folder built under a temporary name and renamed into place.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config.curation import CurationConfig
from pipeline.config.typed import to_plain
from pipeline.curation.dedup import EXACT_DUPLICATE, NEAR_DUPLICATE
from pipeline.curation.filters import rule_of
from pipeline.curation.guard import guard_verdict
from pipeline.curation.report import DomainReport
from pipeline.curation.shards import Run, run_batches, sid_range
from pipeline.engine import ShardTask, shard_dir
from pipeline.schema import DOCUMENT_SCHEMA, REJECT_SCHEMA
from pipeline.staging import link_or_copy
from pipeline.store import DataRoot, write_json

STAGE = "curated"
REJECT_STAGE = "curation"  # the ``stage`` column of reject rows
PARQUET = dict(compression="zstd", compression_level=3)


@dataclass(frozen=True)
class WriteSettings:
    run: Run
    index: int  # the run's position in the plan (its document numbers)
    batch_bytes: int
    excerpt_chars: int


@dataclass
class WriteStage:
    root: DataRoot
    domains: list[str]
    runs: list[Run]
    drops: Path  # the global step's drops.parquet
    config: CurationConfig
    name: str = "curation-write"
    version: str = "curation-write-1"

    @property
    def work_dir(self) -> Path:
        return self.root.layout.stage_work(STAGE, "write")

    def plan(self) -> list[ShardTask]:
        return [ShardTask(key=run.key, inputs=(*run.files, str(self.drops)),
                          settings=WriteSettings(run, i, self.config.batch_bytes, self.config.excerpt_chars), seed=0)
                for i, run in enumerate(self.runs)]

    def run_shard(self, task: ShardTask, out: Path) -> dict:
        return write_run(task.settings, self.drops, out)

    def finish(self, results: list[dict]) -> dict[str, DomainReport]:
        shards = [shard_dir(self, t.key) for t in self.plan()]
        return {domain: write_domain(self.root, domain, self.config,
                                     [(run, shard, result) for run, shard, result in zip(self.runs, shards, results)
                                      if run.domain == domain])
                for domain in self.domains}


def write_run(settings: WriteSettings, drops_path: Path, out: Path) -> dict:
    run = settings.run
    lo, hi = sid_range(settings.index)
    drops = pl.scan_parquet(drops_path).filter(pl.col("sid").is_between(lo, hi)).collect()
    kept_writer = None
    rejects = pq.ParquetWriter(out / "rejects.parquet", REJECT_SCHEMA, **PARQUET)
    stats = {"domain": run.domain, "rows_in": 0, "rows_kept": 0, "bytes_in": 0, "bytes_kept": 0, "drops": Counter(),
             "rules": Counter()}
    try:
        for frame in run_batches(run, DOCUMENT_SCHEMA.names, settings.batch_bytes):
            frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("sid") + lo + stats["rows_in"])
            stats["rows_in"] += frame.height
            stats["bytes_in"] += int(frame["n_bytes"].sum())
            is_dropped = frame["sid"].is_in(drops["sid"].implode())
            dropped = frame.filter(is_dropped).join(drops, on="sid", how="left", maintain_order="left")
            kept = frame.filter(~is_dropped)
            if dropped.height:
                rows = dropped.select(
                    pl.lit(REJECT_STAGE).alias("stage"), "domain", "source", "source_file", "source_row", "doc_id",
                    "reason", "detail", "duplicate_of",
                    pl.col("text").str.slice(0, settings.excerpt_chars).alias("excerpt"))
                rejects.write_table(rows.to_arrow().cast(REJECT_SCHEMA))
                stats["drops"].update(dict(dropped["reason"].value_counts().iter_rows()))
                stats["rules"].update(dict(_rule_keys(dropped).value_counts().iter_rows()))
            if kept.height:
                if kept_writer is None:
                    kept_writer = pq.ParquetWriter(out / "kept.parquet", DOCUMENT_SCHEMA, **PARQUET)
                # One row group per batch: row groups bounded by bytes of text, not by a document count.
                table = kept.select(DOCUMENT_SCHEMA.names).to_arrow().cast(DOCUMENT_SCHEMA)
                kept_writer.write_table(table, row_group_size=table.num_rows)
                stats["rows_kept"] += kept.height
                stats["bytes_kept"] += int(kept["n_bytes"].sum())
    finally:
        rejects.close()
        if kept_writer is not None:
            kept_writer.close()
    return {**stats, "drops": dict(stats["drops"]), "rules": dict(stats["rules"])}


def _rule_keys(dropped: pl.DataFrame) -> pl.Series:
    """"<filter>.<rule>" for a filter drop, the reason alone for the others (duplicates)."""
    rule = rule_of(pl.col("detail"))
    is_filter = ~pl.col("reason").is_in([NEAR_DUPLICATE, EXACT_DUPLICATE]) & rule.is_not_null()
    return dropped.select(pl.when(is_filter).then(pl.col("reason") + "." + rule).otherwise(pl.col("reason"))
                          .alias("rule")).to_series()


def write_domain(root: DataRoot, domain: str, config: CurationConfig, shards: list[tuple[Run, Path, dict]]) -> DomainReport:
    """``curated/domain=<domain>/`` from the domain's pass-2 shards (in run order)."""
    resolved = config.for_domain(domain)
    report = DomainReport(domain=domain, profile=resolved.profile)
    reasons: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    with root.write_domain(STAGE, domain) as out:
        (out / "data").mkdir()
        rejects = pq.ParquetWriter(out / "rejects.parquet", REJECT_SCHEMA, **PARQUET)
        try:
            for run, shard, result in shards:
                if (shard / "kept.parquet").exists():
                    link_or_copy(shard / "kept.parquet", out / "data" / f"part-{run.number:05d}.parquet")
                for batch in pq.ParquetFile(shard / "rejects.parquet").iter_batches(batch_size=4096):
                    rejects.write_table(pa.Table.from_batches([batch], schema=REJECT_SCHEMA))
                for field in ("rows_in", "rows_kept", "bytes_in", "bytes_kept"):
                    setattr(report, field, getattr(report, field) + result[field])
                reasons.update(result["drops"])
                rules.update(result["rules"])
        finally:
            rejects.close()
        report.drops = dict(sorted(reasons.items()))
        report.drops_by_rule = dict(sorted(rules.items(), key=lambda kv: (-kv[1], kv[0])))
        report.guard = guard_verdict(report, config.guard)
        write_json(out / "stats.json", {
            **report.to_dict(),
            "profile_reason": config.profile_choice(domain)[1],
            "config": {"exact_dedup": to_plain(config.exact_dedup), "near_dedup": to_plain(config.near_dedup),
                       "filters_enabled": config.filters_enabled, "domain": to_plain(resolved)},
        })
    return report
