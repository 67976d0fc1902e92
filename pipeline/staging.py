"""Staging: raw source files -> the canonical document table, one domain at a time.

A sharded stage (``pipeline.engine``): one shard task per input file, run in parallel on the spec's engine.
Streams every file (never a whole file in memory: at most ``batch_rows`` rows or 8 MB of text per worker),
writes one Parquet part per input file, and
records every rejected row with its reason. Per source, ``rows_read == rows_kept + rows_rejected``;
a whole-file problem either raises (policy "fail") or moves that file's rows into the rejects
(policy "quarantine").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config.execution import ExecutionConfig
from pipeline.config.staging import SourceConfig, StagingConfig
from pipeline.engine import ShardTask, run_stage, shard_dir, shard_seed
from pipeline.engine.outcome import CheckOutcome, Image, StageOutcome, Table
from pipeline.layout import DOMAIN_PARTS, DOMAIN_REJECTS, DOMAIN_STATS
from pipeline.readers import BadFileError, RawRow, read_source_file
from pipeline.schema import DOCUMENT_SCHEMA, REJECT_SCHEMA, doc_id_for
from pipeline.spec import Spec
from pipeline.store import DataRoot, file_sha256, write_json

STAGE = "documents"
log = logging.getLogger(__name__)

# A batch is also flushed once its texts reach this many characters, so that files of a few very
# large documents (books) stream too instead of filling a whole batch of ``batch_rows``.
FLUSH_CHARS = 8 << 20

_DICTIONARY_COLUMNS = ["domain", "source", "source_file", "stage", "reason"]


def parquet_options(config: StagingConfig) -> dict:
    return dict(compression="zstd", compression_level=config.compression_level, use_dictionary=_DICTIONARY_COLUMNS)


class StagingError(RuntimeError):
    """A whole-file problem under the "fail" policy; the message names the file."""


@dataclass
class SourceStats:
    files: int = 0
    rows_read: int = 0
    rows_kept: int = 0
    rows_rejected: int = 0
    bytes_kept: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    quarantined_files: list[dict] = field(default_factory=list)
    file_sha256: dict[str, str] = field(default_factory=dict)

    def add(self, other: "SourceStats") -> None:
        """Fold one file's accounting into this source's."""
        self.files += other.files
        self.rows_read += other.rows_read
        self.rows_kept += other.rows_kept
        self.rows_rejected += other.rows_rejected
        self.bytes_kept += other.bytes_kept
        for reason, count in other.rejects_by_reason.items():
            self.rejects_by_reason[reason] = self.rejects_by_reason.get(reason, 0) + count
        self.quarantined_files.extend(other.quarantined_files)
        self.file_sha256.update(other.file_sha256)


@dataclass
class DomainStats:
    domain: str
    sources: dict[str, SourceStats]

    @property
    def rows_read(self) -> int:
        return sum(s.rows_read for s in self.sources.values())

    @property
    def rows_kept(self) -> int:
        return sum(s.rows_kept for s in self.sources.values())

    @property
    def rows_rejected(self) -> int:
        return sum(s.rows_rejected for s in self.sources.values())

    @property
    def bytes_kept(self) -> int:
        return sum(s.bytes_kept for s in self.sources.values())

    def rejects_by_reason(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for s in self.sources.values():
            total.update(s.rejects_by_reason)
        return dict(sorted(total.items()))

    def to_dict(self) -> dict:
        return {
            "domain": self.domain,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_rejected": self.rows_rejected,
            "bytes_kept": self.bytes_kept,
            "rejects_by_reason": self.rejects_by_reason(),
            "sources": {name: asdict(s) for name, s in self.sources.items()},
        }


class _RejectSink:
    """Appends reject rows to one Parquet file in batches."""

    def __init__(self, path: Path, batch_rows: int, options: dict):
        self.options = options
        self.path = path
        self.batch_rows = batch_rows
        self.rows: list[dict] = []
        self.writer: pq.ParquetWriter | None = None

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch_rows:
            self.flush()

    def extend(self, path: Path) -> None:
        """Append every row of another rejects file (one batch in memory at a time)."""
        for batch in pq.ParquetFile(path).iter_batches(batch_size=self.batch_rows):
            self.flush()
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.path, REJECT_SCHEMA, **self.options)
            self.writer.write_table(pa.Table.from_batches([batch], schema=REJECT_SCHEMA))

    def flush(self) -> None:
        if not self.rows:
            return
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, REJECT_SCHEMA, **self.options)
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=REJECT_SCHEMA))
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self.writer is None:  # always leave a (possibly empty) rejects file behind
            pq.write_table(REJECT_SCHEMA.empty_table(), self.path, **self.options)
        else:
            self.writer.close()


def _documents_batch(domain: str, source: str, source_file: str, rows: list[tuple[int, str]]) -> pa.Table:
    texts = pa.array([t for _, t in rows], pa.large_string())
    # Hash each document straight from the Arrow UTF-8 buffer (the same bytes str.encode gives),
    # so the batch is never held a second time as Python bytes.
    offsets = memoryview(texts.buffers()[1]).cast("q")
    data = memoryview(texts.buffers()[2] or b"")
    blake2b = hashlib.blake2b
    ids = [blake2b(data[offsets[i]:offsets[i + 1]], digest_size=16).hexdigest() for i in range(len(rows))]
    n = len(rows)
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.string()),
            pa.array([domain] * n, pa.string()),
            pa.array([source] * n, pa.string()),
            pa.array([source_file] * n, pa.string()),
            pa.array([r for r, _ in rows], pa.int64()),
            texts,
            pc.binary_length(texts),
            pc.utf8_length(texts),
        ],
        schema=DOCUMENT_SCHEMA,
    )


def _display_path(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return str(path)


def stage_file(
    source: SourceConfig,
    path: Path,
    *,
    out_path: Path,
    rejects: _RejectSink,
    stats: SourceStats,
    config: StagingConfig,
    display: str,
) -> None:
    """Stage one input file into ``out_path``; per-row problems go to ``rejects``."""
    writer: pq.ParquetWriter | None = None
    pending: list[tuple[int, str]] = []
    pending_chars = 0
    kept_here = 0
    bytes_here = 0
    reasons: Counter[str] = Counter()

    def reject(raw: RawRow, reason: str, detail: str | None, excerpt: str | None) -> None:
        reasons[reason] += 1
        rejects.add({
            "stage": STAGE, "domain": source.domain, "source": source.name, "source_file": display,
            "source_row": raw.row, "doc_id": None, "reason": reason, "detail": detail,
            "duplicate_of": None, "excerpt": (excerpt or "")[: config.excerpt_chars],
        })

    def flush() -> None:
        nonlocal writer, bytes_here, pending_chars
        if not pending:
            return
        table = _documents_batch(source.domain, source.name, display, pending)
        # The texts now live in the Arrow table: drop the Python strings before the write.
        pending.clear()
        pending_chars = 0
        if writer is None:
            writer = pq.ParquetWriter(out_path, DOCUMENT_SCHEMA, **parquet_options(config))
        writer.write_table(table, row_group_size=config.batch_rows)
        bytes_here += int(pc.sum(table["n_bytes"]).as_py() or 0)

    rows_read = 0
    try:
        for raw in read_source_file(source, path, batch_rows=config.batch_rows):
            rows_read += 1
            if raw.text is None:
                reject(raw, raw.reason or "unreadable_row", raw.detail, raw.raw)
                continue
            text = raw.text
            if not text or text.isspace():  # = not text.strip(), without copying the text
                reject(raw, "empty_text", "the text is empty or whitespace only", text)
                continue
            if len(text) * 4 > config.max_doc_bytes and len(text.encode("utf-8")) > config.max_doc_bytes:
                reject(raw, "too_large", f"{len(text.encode('utf-8'))} bytes > max_doc_bytes {config.max_doc_bytes}", text)
                continue
            pending.append((raw.row, text))
            pending_chars += len(text)
            kept_here += 1
            if len(pending) >= config.batch_rows or pending_chars >= FLUSH_CHARS:
                flush()
        flush()
    except BadFileError as exc:
        if writer is not None:
            writer.close()
            writer = None
        if config.on_bad_file == "fail":
            out_path.unlink(missing_ok=True)
            raise StagingError(
                f"{exc.path}: {exc.reason}: {exc.detail}"
                + (f" (after {exc.rows_read} lines)" if exc.rows_read else "")
                + f" [source {source.name!r}; set staging.on_bad_file: quarantine to skip such files]"
            ) from None
        _quarantine(source, out_path, pending, rejects, reasons, exc, display, config)
        if rows_read == 0:
            _reject_whole_file(source, rejects, exc, display)
        stats.quarantined_files.append(
            {"file": display, "reason": exc.reason, "detail": exc.detail, "rows_read": rows_read}
        )
        kept_here = bytes_here = 0
    finally:
        if writer is not None:
            writer.close()
    stats.rows_read += rows_read
    stats.rows_kept += kept_here
    stats.bytes_kept += bytes_here
    stats.rows_rejected += sum(reasons.values())
    for reason, count in reasons.items():
        stats.rejects_by_reason[reason] = stats.rejects_by_reason.get(reason, 0) + count


def _quarantine(source, out_path, pending, rejects, reasons, exc, display, config) -> None:
    """Move the rows already read from a bad file (written or pending) into the rejects."""
    detail = f"file quarantined: {exc.reason}: {exc.detail}"

    def move(row: int, text: str) -> None:
        reasons["quarantined_file"] += 1
        rejects.add({
            "stage": STAGE, "domain": source.domain, "source": source.name, "source_file": display,
            "source_row": row, "doc_id": doc_id_for(text), "reason": "quarantined_file", "detail": detail,
            "duplicate_of": None, "excerpt": text[: config.excerpt_chars],
        })

    if out_path.exists():
        parquet = pq.ParquetFile(out_path)
        for batch in parquet.iter_batches(batch_size=config.batch_rows, columns=["source_row", "text"]):
            for row, text in zip(batch["source_row"].to_pylist(), batch["text"].to_pylist()):
                move(row, text)
        out_path.unlink()
    for row, text in pending:
        move(row, text)
    pending.clear()


# ``source_row`` of the reject row that stands for a whole quarantined file (rows are numbered from 1).
WHOLE_FILE_ROW = 0


def _reject_whole_file(source, rejects, exc, display) -> None:
    """A quarantined file of which no row could be read still leaves one reject row: the file itself.

    It is not a row read, so the per-source accounting (rows read = kept + rejected) leaves it out.
    """
    rejects.add({
        "stage": STAGE, "domain": source.domain, "source": source.name, "source_file": display,
        "source_row": WHOLE_FILE_ROW, "doc_id": None, "reason": "quarantined_file",
        "detail": f"file quarantined: {exc.reason}: {exc.detail} (0 rows read; this row stands for the whole file)",
        "duplicate_of": None, "excerpt": "",
    })


@dataclass
class StagingStage:
    """Staging of one domain on the stage contract: one shard per input file (its Parquet part, its
    rejects, its accounting); ``finish`` puts the parts in place, merges the rejects, sums the stats."""

    spec: Spec
    domain: str
    root: DataRoot
    name: str = STAGE
    version: str = "staging-1"

    @property
    def work_dir(self) -> Path:
        return self.root.layout.work(STAGE, self.domain)

    def plan(self) -> list[ShardTask]:
        sources = self.spec.sources_for(self.domain)
        if not sources:
            raise ValueError(f"domain {self.domain!r} has no source in {self.spec.path.name}")
        stage_seed = self.spec.seed_for(STAGE)
        return [
            ShardTask(key=f"{source.name}-{index:05d}", inputs=(str(path),),
                      settings=(source, self.spec.staging, _display_path(path, self.spec.path.parent)),
                      seed=shard_seed(stage_seed, f"{source.name}-{index:05d}"))
            for source in sources for index, path in enumerate(self.spec.source_files[source.name])
        ]

    def run_shard(self, task: ShardTask, out: Path) -> dict:
        source, config, display = task.settings
        path = Path(task.inputs[0])
        stats = SourceStats(files=1)
        if path.exists():
            stats.file_sha256[display] = file_sha256(path)
        rejects = _RejectSink(out / "rejects.parquet", config.batch_rows, parquet_options(config))
        try:
            stage_file(source, path, out_path=out / "data.parquet", rejects=rejects, stats=stats,
                       config=config, display=display)
        finally:
            rejects.close()
        return {"source": source.name, "stats": asdict(stats)}

    def finish(self, results: list[dict]) -> DomainStats:
        config: StagingConfig = self.spec.staging
        stats = DomainStats(domain=self.domain, sources={s.name: SourceStats() for s in self.spec.sources_for(self.domain)})
        with self.root.write_domain(STAGE, self.domain) as out:
            (out / DOMAIN_PARTS).mkdir()
            rejects = _RejectSink(out / DOMAIN_REJECTS, config.batch_rows, parquet_options(config))
            try:
                for task, result in zip(self.plan(), results):
                    shard = shard_dir(self, task.key)
                    if (shard / "data.parquet").exists():
                        link_or_copy(shard / "data.parquet", out / DOMAIN_PARTS / f"{task.key}.parquet")
                    rejects.extend(shard / "rejects.parquet")
                    stats.sources[result["source"]].add(SourceStats(**result["stats"]))
            finally:
                rejects.close()
            write_json(out / DOMAIN_STATS, stats.to_dict())
        return stats


def content_version(stats: DomainStats) -> str:
    """Changes exactly when the bytes of the domain's raw files change."""
    hashes = {name: s.file_sha256 for name, s in stats.sources.items()}
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]


def check_accounting(root: DataRoot, domain: str) -> CheckOutcome:
    """Re-count the written files and compare with what staging read, per source."""
    stats = root.read_stats(STAGE, domain)
    kept = root.scan(STAGE, [domain]).group_by("source").len().collect()
    # rows read = kept + rejected; a whole-file reject row (a quarantined file with no readable row) is no row read
    rejected = (root.scan_rejects(STAGE, [domain]).filter(pl.col("source_row") != WHOLE_FILE_ROW)
                .group_by("source").len().collect())
    kept_by = dict(zip(kept["source"].to_list(), kept["len"].to_list()))
    rejected_by = dict(zip(rejected["source"].to_list(), rejected["len"].to_list()))
    problems = []
    for name, s in stats["sources"].items():
        k, r = kept_by.get(name, 0), rejected_by.get(name, 0)
        if s["rows_read"] != k + r or s["rows_kept"] != k or s["rows_rejected"] != r:
            problems.append(f"{name}: read {s['rows_read']} != kept {k} + rejected {r}")
    return CheckOutcome(
        name="accounting", passed=not problems,
        metadata={"rows_read": stats["rows_read"], "rows_kept": stats["rows_kept"],
                  "rows_rejected": stats["rows_rejected"], "problems": "\n".join(problems) or "none"})


def staging_outcome(root: DataRoot, domain: str, stats: DomainStats) -> StageOutcome:
    """What the `documents` asset shows: counts, rejects, previews, and its accounting check."""
    from pipeline import plots  # matplotlib: not imported by the workers that stage files
    preview = (root.scan(STAGE, [domain]).select("doc_id", "source", "source_file", "source_row", "n_bytes", "text")
               .head(5).collect())
    rejects = root.scan_rejects(STAGE, [domain]).select("source", "source_row", "reason", "detail").head(10).collect()
    metadata = {
        "rows_read": stats.rows_read,
        "rows_kept": stats.rows_kept,
        "rows_rejected": stats.rows_rejected,
        "bytes_kept": stats.bytes_kept,
        "per_source": Table(per_source_rows(stats.to_dict())),
        "rejects_by_reason": stats.rejects_by_reason(),
    }
    if stats.rows_rejected:
        metadata["drops_by_reason"] = Image(plots.drops_by_reason(
            {s: c.rejects_by_reason for s, c in stats.sources.items() if c.rejects_by_reason},
            title=f"{domain}: rows rejected at staging, by reason and source"), alt="rejects by reason")
    metadata |= {
        "quarantined_files": [q for s in stats.sources.values() for q in s.quarantined_files],
        "preview": Table(preview.to_dicts()),
        "rejects_preview": Table(rejects.to_dicts()),
        "path": root.domain_dir(STAGE, domain),
    }
    return StageOutcome(metadata=metadata, data_version=content_version(stats),
                        checks=[check_accounting(root, domain)])


def per_source_rows(stats: dict) -> list[dict]:
    """stats.json's per-source accounting: the table a user looks for first."""
    return [{"source": name, "files": s.get("files", 0), "rows_read": s["rows_read"], "rows_kept": s["rows_kept"],
             "rows_rejected": s["rows_rejected"], "bytes_kept": s.get("bytes_kept", 0),
             "quarantined_files": len(s.get("quarantined_files", []))}
            for name, s in stats["sources"].items()]


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no bytes copied, the shard keeps its file until the stage is done), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage_domain(
    spec: Spec,
    domain: str,
    *,
    root: DataRoot | None = None,
    progress: Callable[[str], None] | None = None,
    execution: ExecutionConfig | None = None,
) -> DomainStats:
    """Stage every source of ``domain``; replaces ``<root>/documents/domain=<domain>`` atomically.
    Input files are staged in parallel on the spec's engine (``execution``); an interrupted run resumes."""
    root = root or DataRoot(spec.data_root)
    result = run_stage(StagingStage(spec, domain, root), execution=execution or spec.execution, progress=progress)
    log.info("staged %s: %d kept, %d rejected", domain, result.rows_kept, result.rows_rejected)
    return result
