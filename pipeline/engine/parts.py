"""Small helpers shared by sharded stages: cutting a Parquet file into shards, reading text in batches bounded by
bytes, writing row groups bounded by bytes, joining shard parts in plan order, and a fixed torch thread count
inside a shard."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Uncompressed bytes of one row group a stage writes: a reader that holds one row group at a time (token bins,
# the next stage's shards) then needs about this much, whatever the number of documents in it.
ROW_GROUP_BYTES = 8 << 20
# Torch threads inside a shard. Fixed, so that a shard's floating-point results do not depend on how many cores
# the process running it has (inline, a pool worker, a Ray actor); the engine's workers are the parallelism.
SHARD_TORCH_THREADS = 1


def parquet_row_group_runs(path: str | os.PathLike, *, target_bytes: int) -> list[list[int]]:
    """Consecutive row groups of a Parquet file, cut when a run reaches ``target_bytes`` (uncompressed)."""
    meta = pq.ParquetFile(path).metadata
    runs: list[list[int]] = [[]]
    size = 0
    for g in range(meta.num_row_groups):
        if runs[-1] and size >= target_bytes:
            runs.append([])
            size = 0
        runs[-1].append(g)
        size += meta.row_group(g).total_byte_size
    return runs if runs[0] else []


def text_batches(pieces: Iterable[tuple[str | os.PathLike, Sequence[int] | None]], *, columns: Sequence[str],
                 batch_bytes: int, text_column: str = "text") -> Iterator[pa.Table]:
    """The rows of ``pieces`` ((Parquet file, its row groups or None for all), in order) as tables of at most
    ``batch_bytes`` of ``text_column`` (UTF-8 bytes); a single larger document travels alone.

    The one reader of every stage that tokenizes, hashes or filters text: what such a stage holds per batch
    (tokenizer encodings: ~150 bytes per token; MinHash, filter state) grows with the batch's text, so a batch
    bounded by bytes bounds the stage's memory by the budget or the largest document, whatever the number of
    documents in a file or row group (a fixed number of rows per batch does not: 256 books are ~400 MB).
    A batch may span row groups and files (fewer, fuller batches: per-batch costs stay small). Greedy: a batch
    takes documents while their text fits, so its boundaries depend on the documents only.
    """
    columns = list(columns)
    pending: list[pa.RecordBatch] = []
    size = 0
    for path, row_groups in pieces:
        groups = None if row_groups is None else list(row_groups)
        for rb in pq.ParquetFile(path).iter_batches(batch_size=256, columns=columns, row_groups=groups):
            lengths = pc.binary_length(rb.column(columns.index(text_column))).to_numpy(zero_copy_only=False)
            start = 0
            while start < rb.num_rows:
                # the rows that still fit in the budget; a document larger than the budget travels alone
                room = np.cumsum(lengths[start:]) + size
                fit = int(np.searchsorted(room, batch_bytes, side="right"))
                if fit == 0 and pending:
                    yield _table(pending)
                    pending, size = [], 0
                    continue
                fit = max(fit, 1)
                pending.append(rb.slice(start, fit))
                size = int(room[fit - 1])
                start += fit
                if start < rb.num_rows or size >= batch_bytes:  # the next document would not fit
                    yield _table(pending)
                    pending, size = [], 0
    if pending:
        yield _table(pending)


def _table(batches: list[pa.RecordBatch]) -> pa.Table:
    schema = batches[0].schema  # parts written by one stage share a schema; a differing one is cast to it
    return pa.Table.from_batches([b if b.schema == schema else b.cast(schema) for b in batches])


@contextmanager
def fixed_torch_threads(threads: int = SHARD_TORCH_THREADS) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ByteBoundedWriter:
    """A Parquet writer that buffers batches and writes a row group whenever the buffer reaches ``row_group_bytes``
    (Arrow's in-memory size), instead of a fixed number of rows: long documents make small row groups."""

    def __init__(self, path: str | os.PathLike, schema: pa.Schema, *, row_group_bytes: int | None = None, **options):
        self.writer = pq.ParquetWriter(path, schema, **({"compression": "zstd"} | options))
        self.schema, self.limit = schema, row_group_bytes or ROW_GROUP_BYTES
        self.pending: list[pa.RecordBatch] = []
        self.size = 0
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        # A batch larger than the bound is cut first (by its mean row size), so no row group is much larger.
        rows = max(1, int(self.limit * batch.num_rows // max(batch.nbytes, 1)))
        for start in range(0, batch.num_rows, rows):
            piece = batch.slice(start, rows)
            self.pending.append(piece)
            self.size += piece.nbytes
            self.rows += piece.num_rows
            if self.size >= self.limit:
                self.flush()

    def flush(self) -> None:
        if self.pending:
            table = pa.Table.from_batches(self.pending, schema=self.schema)
            self.writer.write_table(table, row_group_size=table.num_rows)
        self.pending, self.size = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()

    def __enter__(self) -> "ByteBoundedWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def join_parquet(parts: Sequence[Path], dest: str | os.PathLike, schema: pa.Schema) -> int:
    """Copy the row groups of ``parts`` (missing ones skipped), in order, into one file; returns its rows.
    One row group is in memory at a time."""
    rows = 0
    with pq.ParquetWriter(dest, schema, compression="zstd") as writer:
        for part in parts:
            if not Path(part).exists():
                continue
            source = pq.ParquetFile(part)
            for g in range(source.num_row_groups):
                table = source.read_row_group(g)
                writer.write_table(table, row_group_size=max(1, table.num_rows))
                rows += table.num_rows
    return rows


def link_or_copy(source: Path, dest: Path) -> None:
    """``dest`` as a hard link to ``source`` (same file system: no bytes copied), else a copy. The shard's file
    stays where it is, so a crash after this leaves the finished shard intact for the re-run."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


@contextmanager
def spilling_duckdb(folder: Path, *, database: str = "spill.duckdb", memory_limit: str = "1GB") -> Iterator:
    """A DuckDB connection on disk in ``folder`` whose sorts, joins and windows spill there past ``memory_limit``:
    the global steps that order or join one row per document use it, so their memory does not grow with the
    corpus."""
    import duckdb

    con = duckdb.connect(str(Path(folder) / database))
    try:
        spill = str(Path(folder) / "spill").replace("'", "''")  # a quote in the path stays a quote in SQL
        con.execute(f"SET temp_directory = '{spill}'")
        con.execute(f"SET memory_limit = '{memory_limit}'")
        yield con
    finally:
        con.close()
