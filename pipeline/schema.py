"""The canonical document table, from staging onward, and the rejects table every stage writes.

``doc_id`` is a content hash (BLAKE2b-128 of the UTF-8 text), so re-running a stage gives the same
ids. Exact copies share a ``doc_id`` until curation's exact dedup keeps one of them; from curation
onward ``doc_id`` is unique. ``(source, source_file, source_row)`` always points back at the raw row.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_row", pa.int64(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("n_bytes", pa.int64(), nullable=False),
        pa.field("n_chars", pa.int64(), nullable=False),
    ]
)

# One row per dropped document, in every stage. ``reason`` is a short code (malformed_json,
# exact_duplicate, gopher_repetition, ...); ``detail`` says more; ``duplicate_of`` names the
# surviving doc_id where a document was dropped as a copy of another.
REJECT_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_row", pa.int64(), nullable=False),
        pa.field("doc_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("duplicate_of", pa.string()),
        pa.field("excerpt", pa.string()),
    ]
)


def doc_id_for(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
