"""Curation's shards: runs of the staged Parquet row groups, in the stage's priority order.

A run holds consecutive row groups of a domain's staged parts, cut once it reaches ``RUN_BYTES`` of
uncompressed columns (Parquet metadata): its boundaries depend on the staged files only, never on the
number of workers. A domain's parts are taken in the *priority order* of exact dedup (the source's
position in the spec, then ``source_file``; rows within a part follow ``source_row``), so a domain's
runs, read one after the other, give its documents in that order, and the curated parts they become
(named by run number) keep it: the curated documents come out in the same order as before sharding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from pipeline.engine.parts import text_batches
from pipeline.store import DataRoot

# Uncompressed bytes per run (a shard of both passes): large enough that a shard's fixed costs are small,
# small enough that a corpus of a few hundred MiB gives every core several shards.
RUN_BYTES = 16 << 20

# A document's number across the stage: the run's number in the plan, then its row in the run.
SID_SHIFT = 32


@dataclass(frozen=True)
class Run:
    domain: str
    number: int                                   # the run's position among its domain's runs
    pieces: tuple[tuple[str, tuple[int, ...]], ...]  # (staged part, its row groups), in priority order
    rows: int

    @property
    def key(self) -> str:
        return f"{self.domain}-{self.number:05d}"

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(path for path, _ in self.pieces)


def _first_row(path: Path) -> tuple[str, str]:
    """(source, source_file) of a staged part (one part holds one input file)."""
    row = pq.ParquetFile(path).read_row_group(0, columns=["source", "source_file"]).slice(0, 1).to_pylist()[0]
    return row["source"], row["source_file"]


def plan_runs(root: DataRoot, domains: list[str], source_rank: dict[str, int], *,
              run_bytes: int | None = None) -> list[Run]:
    """Every domain's runs, domains in the spec's order."""
    run_bytes = run_bytes or RUN_BYTES
    runs: list[Run] = []
    for domain in domains:
        first = len(runs)
        parts = []
        for path in root.data_files("documents", [domain]):
            meta = pq.ParquetFile(path).metadata
            if meta.num_row_groups == 0 or meta.num_rows == 0:
                continue
            source, source_file = _first_row(path)
            parts.append(((source_rank.get(source, len(source_rank)), source, source_file, str(path)), meta))
        parts.sort(key=lambda p: p[0])
        pieces: list[tuple[str, list[int]]] = []
        size = rows = 0
        for (_, _, _, path), meta in parts:
            for group in range(meta.num_row_groups):
                if pieces and size >= run_bytes:
                    runs.append(_run(domain, len(runs) - first, pieces, rows))
                    pieces, size, rows = [], 0, 0
                if not pieces or pieces[-1][0] != path:
                    pieces.append((path, []))
                pieces[-1][1].append(group)
                size += meta.row_group(group).total_byte_size
                rows += meta.row_group(group).num_rows
        if pieces:
            runs.append(_run(domain, len(runs) - first, pieces, rows))
    return runs


def _run(domain: str, number: int, pieces: list[tuple[str, list[int]]], rows: int) -> Run:
    return Run(domain, number, tuple((p, tuple(g)) for p, g in pieces), rows)


def iter_text_batches(path: Path, columns: list[str], batch_bytes: int,
                      row_groups: list[int] | None = None) -> Iterator[pl.DataFrame]:
    """Frames of at most ``batch_bytes`` of text (a larger single document travels alone).

    Record batches are cut row-wise at the budget, so a row group of many large documents (a
    Gutenberg shelf) never becomes one huge frame, and a batch never holds more than the budget
    plus nothing: memory is bounded by the budget or the largest document, whichever is larger.
    """
    yield from _batches([(path, row_groups)], columns, batch_bytes)


def run_batches(run: Run, columns: list[str], batch_bytes: int) -> Iterator[pl.DataFrame]:
    """The run's documents in order, a batch of about ``batch_bytes`` of text at a time (a batch may span
    the run's parts: the filters and MinHash cost per batch as well as per byte)."""
    yield from _batches([(Path(path), list(groups)) for path, groups in run.pieces], columns, batch_bytes)


def _batches(pieces: list[tuple[Path, list[int] | None]], columns: list[str], batch_bytes: int) -> Iterator[pl.DataFrame]:
    for table in text_batches(pieces, columns=columns, batch_bytes=batch_bytes):
        yield pl.from_arrow(table)


def sid_range(index: int) -> tuple[int, int]:
    """The first and last document number of the plan's ``index``-th run."""
    return index << SID_SHIFT, ((index + 1) << SID_SHIFT) - 1
