"""A stage's data version: a hash of the documents it wrote, so identical output means an identical version.

Dagster marks an asset stale when a parent's data version differs from the one it read. Hashing the output
(rather than the inputs, Dagster's default) stops the propagation where a stage's result did not change:
a new raw file whose documents curation drops as near duplicates leaves ``curated_documents`` at the same
version, and nothing below it is stale. ``doc_id`` is a hash of the text, so the sequence of
``(domain, doc_id, source, source_file, source_row)`` in file order is the content and order downstream reads;
rejects are not part of it (nothing below reads them).
"""

from __future__ import annotations

import hashlib

import polars as pl

from pipeline.store import DataRoot

COLUMNS = ["domain", "doc_id", "source", "source_file", "source_row"]


def stage_content_version(root: DataRoot, stage: str, domains: list[str]) -> str:
    digest = hashlib.sha256()
    for domain in domains:
        digest.update(f"\0domain={domain}\0".encode())
        for path in root.data_files(stage, [domain]):
            frame = pl.read_parquet(path, columns=COLUMNS)
            digest.update(frame.hash_rows(seed=0, seed_1=1, seed_2=2, seed_3=3).to_numpy().tobytes())
    return digest.hexdigest()[:16]


__all__ = ["stage_content_version"]
