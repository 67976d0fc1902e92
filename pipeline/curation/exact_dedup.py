"""Exact dedup across every source and domain, in DuckDB (sorts and windows spill to disk).

Survivor rule: among documents with the same normalized-text key, the one that comes first in the
*priority order* survives. The priority order is: the source's position in the spec (earlier sources
win), then ``source_file``, then ``source_row``. The same order numbers the surviving documents
``gidx = 0, 1, ...``, which the near-duplicate step reuses, so its survivors follow the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline.config.curation import ExactDedupConfig
from pipeline.curation.normalize import exact_key_sql


@dataclass
class ExactResult:
    rows_in: dict[str, int]
    duplicates: dict[str, int]
    unique_files: dict[str, Path]  # domain -> parquet of survivors (gidx + document columns), by gidx
    rejects_file: Path  # exact-duplicate reject rows (REJECT_SCHEMA columns)
    n_unique: int


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def exact_dedup(
    files_by_domain: dict[str, list[Path]],
    source_rank: dict[str, int],
    config: ExactDedupConfig,
    work: Path,
    *,
    excerpt_chars: int = 200,
    threads: int | None = None,
) -> ExactResult:
    """Find exact duplicates among all documents; write survivors per domain and the rejects."""
    work.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(work / "exact.duckdb"))
    try:
        con.execute(f"SET temp_directory = '{work / 'spill'}'")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        all_files = [f for files in files_by_domain.values() for f in files]
        con.execute("CREATE TABLE ranks (source VARCHAR, rank INTEGER)")
        if source_rank:
            con.executemany("INSERT INTO ranks VALUES (?, ?)", list(source_rank.items()))
        unknown = len(source_rank)
        # Without exact dedup every row is its own key; the same code path then only numbers rows.
        key = exact_key_sql("text", config) if config.enabled else "source || '/' || source_file || '#' || source_row"
        con.execute(f"""
            CREATE TABLE keyed AS
            SELECT d.domain, d.source, d.source_file, d.source_row, d.doc_id,
                   coalesce(r.rank, {unknown}) AS rank, {key} AS k, left(d.text, {int(excerpt_chars)}) AS excerpt
            FROM read_parquet({_sql_list(all_files)}) d LEFT JOIN ranks r USING (source)
        """)
        con.execute("""
            CREATE TABLE ranked AS
            SELECT *,
                   row_number() OVER w AS copy_no,
                   first_value(doc_id) OVER w AS survivor_id,
                   first_value(source || ':' || source_file || '#' || source_row) OVER w AS survivor_at
            FROM keyed
            WINDOW w AS (PARTITION BY k ORDER BY rank, source, source_file, source_row
                         ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        """)
        con.execute("""
            CREATE TABLE survivors AS
            SELECT domain, source, source_file, source_row,
                   row_number() OVER (ORDER BY rank, source, source_file, source_row) - 1 AS gidx
            FROM ranked WHERE copy_no = 1
        """)
        rejects_file = work / "exact_rejects.parquet"
        con.execute(f"""
            COPY (
              SELECT 'curation' AS stage, domain, source, source_file, source_row::BIGINT AS source_row, doc_id,
                     'exact_duplicate' AS reason,
                     'same normalized text as ' || survivor_at AS detail,
                     survivor_id AS duplicate_of, excerpt
              FROM ranked WHERE copy_no > 1
              ORDER BY domain, rank, source, source_file, source_row
            ) TO '{rejects_file}' (FORMAT parquet)
        """)
        rows_in = dict(con.execute("SELECT domain, count(*) FROM keyed GROUP BY domain").fetchall())
        duplicates = dict(con.execute("SELECT domain, count(*) FROM ranked WHERE copy_no > 1 GROUP BY domain").fetchall())
        unique_files = {}
        for domain, files in files_by_domain.items():
            path = work / f"unique-{domain}.parquet"
            con.execute(f"""
                COPY (
                  SELECT s.gidx, d.doc_id, d.domain, d.source, d.source_file, d.source_row, d.text, d.n_bytes, d.n_chars
                  FROM read_parquet({_sql_list(files)}) d
                  JOIN (SELECT * FROM survivors WHERE domain = $domain) s USING (source, source_file, source_row)
                  ORDER BY s.gidx
                ) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 1024)
            """, {"domain": domain}) if files else None
            if files:
                unique_files[domain] = path
        n_unique = con.execute("SELECT count(*) FROM survivors").fetchone()[0]
    finally:
        con.close()
    for name in ("exact.duckdb", "exact.duckdb.wal"):
        (work / name).unlink(missing_ok=True)
    return ExactResult(
        rows_in={d: rows_in.get(d, 0) for d in files_by_domain},
        duplicates={d: duplicates.get(d, 0) for d in files_by_domain},
        unique_files=unique_files,
        rejects_file=rejects_file,
        n_unique=int(n_unique),
    )
