"""Parquet text shards: the same documents as the token shards, in the same order, as text.

Columns: ``doc_id``, ``domain``, ``text`` (what the issue asks for), plus ``epoch`` (which pass over
its domain this copy comes from) and ``n_tokens`` (tokens it contributes, EOS included) so a shard
can be audited against its ``.idx`` without re-tokenizing. A document cut to fill a quota exactly
holds the prefix of its text that its kept tokens cover.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TEXT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("n_tokens", pa.int64(), nullable=False),
    ]
)


class TextShardWriter:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._writer = pq.ParquetWriter(self.path, TEXT_SCHEMA, compression="zstd", compression_level=3,
                                        use_dictionary=["domain", "doc_id"])
        self.rows = 0

    def add(self, *, doc_ids: list[str], domains: list[str], text_offsets: np.ndarray, text_data: np.ndarray,
            epochs: np.ndarray, n_tokens: np.ndarray) -> None:
        """Append rows; texts are given as UTF-8 bytes back to back with ``len(rows) + 1`` offsets."""
        n = len(doc_ids)
        text = pa.LargeStringArray.from_buffers(
            n, pa.py_buffer(np.ascontiguousarray(text_offsets, dtype=np.int64)), pa.py_buffer(np.ascontiguousarray(text_data)),
        )
        table = pa.Table.from_arrays(
            [pa.array(doc_ids, pa.string()), pa.array(domains, pa.string()), text,
             pa.array(epochs, pa.int32()), pa.array(n_tokens, pa.int64())],
            schema=TEXT_SCHEMA,
        )
        self._writer.write_table(table)
        self.rows += n

    def finish(self) -> None:
        self._writer.close()


__all__ = ["TEXT_SCHEMA", "TextShardWriter"]
