"""Pass 1 of emission: stream one domain's documents through the tokenizer into a token cache.

Documents are read (``pipeline.engine.parts.text_batches``) and tokenized with ``encode_batch_fast`` in batches of
at most ``batch_bytes`` of text, so memory stays bounded by two batches (one encoding while the previous one is
written), never by the domain or the corpus. The cache holds, per domain: the token ids (no EOS), the UTF-8 text,
the doc_ids, and each one's per-document offsets, every file written as the batches go and memory-mapped when
read, so neither pass holds anything per document in memory and pass 2 can gather any document in any order. A
cache is built in a temporary folder and renamed into place with a ``meta.json`` recording its fingerprint
(inputs' sha256, tokenizer sha256, dtype); a later run with the same fingerprint reuses it, which is how an
interrupted emission resumes without redoing finished domains.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Tokenizer
from pipeline.diskspace import longest_token_bytes, min_token_bytes, require_free
from pipeline.engine.parts import text_batches
from pipeline.store import file_sha256, replace_dir

CACHE_VERSION = 2
# One int64 offset per document (plus a leading 0) for tokens, text and doc_id each.
OFFSET_FILES = ("token_offsets.bin", "text_offsets.bin", "doc_id_offsets.bin")


def fingerprint(files: list[Path], *, tokenizer_sha256: str, dtype: np.dtype) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}:{tokenizer_sha256}:{np.dtype(dtype).name}".encode())
    for f in files:
        h.update(f"\n{Path(f).name}:{file_sha256(f)}".encode())
    return h.hexdigest()


class DocLengths:
    """Tokens per document as emitted (its ids plus one EOS), read from memory-mapped offsets when indexed."""

    def __init__(self, token_offsets: np.ndarray):
        self.offsets = token_offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        return np.asarray(self.offsets[index + 1] - self.offsets[index] + 1, dtype=np.int64)

    def sum(self) -> int:
        return int(self.offsets[-1] - self.offsets[0]) + len(self)


@dataclass
class DomainCache:
    """A finished cache, memory-mapped."""

    domain: str
    path: Path
    tokens: np.ndarray  # all documents' ids back to back, no EOS
    token_offsets: np.ndarray  # int64[n + 1]
    text: np.ndarray  # uint8, UTF-8 of all documents back to back
    text_offsets: np.ndarray  # int64[n + 1]
    id_bytes: np.ndarray  # uint8, UTF-8 of all doc_ids back to back
    id_offsets: np.ndarray  # int64[n + 1]
    meta: dict

    @property
    def documents(self) -> int:
        return len(self.token_offsets) - 1

    @property
    def lengths(self) -> DocLengths:
        return DocLengths(self.token_offsets)

    def doc_id(self, i: int) -> str:
        return bytes(self.id_bytes[self.id_offsets[i]: self.id_offsets[i + 1]]).decode("utf-8")

    def doc_text(self, i: int) -> str:
        return bytes(self.text[self.text_offsets[i]: self.text_offsets[i + 1]]).decode("utf-8")


def _memmap(path: Path, dtype) -> np.ndarray:
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def open_cache(path: Path) -> DomainCache:
    meta = json.loads((path / "meta.json").read_text())
    return DomainCache(
        domain=meta["domain"], path=path,
        tokens=_memmap(path / "tokens.bin", np.dtype(meta["dtype"])),
        token_offsets=_memmap(path / "token_offsets.bin", np.int64),
        text=_memmap(path / "text.bin", np.uint8),
        text_offsets=_memmap(path / "text_offsets.bin", np.int64),
        id_bytes=_memmap(path / "doc_ids.bin", np.uint8),
        id_offsets=_memmap(path / "doc_id_offsets.bin", np.int64),
        meta=meta,
    )


def _text_batches(files: list[Path], *, batch_bytes: int) -> Iterator[tuple[pa.Array, pa.Array]]:
    """(doc_id, text) as large_string arrays of at most ``batch_bytes`` of text, in file and row order (a single
    larger document travels alone; staging's max_doc_bytes bounds it)."""
    for table in text_batches([(f, None) for f in files], columns=["doc_id", "text"], batch_bytes=batch_bytes):
        yield (pc.cast(table.column("doc_id"), pa.large_string()).combine_chunks(),
               pc.cast(table.column("text"), pa.large_string()).combine_chunks())


def cache_bytes_at_least(files: list[Path], tokenizer: Tokenizer, dtype: np.dtype) -> int:
    """A lower bound on a domain cache's size: all of its text, plus its tokens at the most bytes per token."""
    text = 0
    for f in files:
        if "n_bytes" in pq.ParquetFile(f).schema_arrow.names:  # staged documents have it; other inputs: no bound
            text += int(pc.sum(pq.read_table(f, columns=["n_bytes"]).column("n_bytes")).as_py() or 0)
    return text + min_token_bytes(text, longest_token_bytes=longest_token_bytes(tokenizer),
                                  itemsize=np.dtype(dtype).itemsize)


def _encode(tokenizer: Tokenizer, texts: list[str], dtype: np.dtype) -> list[np.ndarray]:
    # encode_batch_fast skips computing character offsets, which pass 1 never needs. Both release
    # the GIL while the tokenizer's own threads work, so the next chunk encodes while this one is written.
    # Each document's ids become a compact array at once: a Python list of ints costs ~40 bytes per token.
    fast = getattr(tokenizer, "encode_batch_fast", None) or tokenizer.encode_batch
    return [np.fromiter(e.ids, dtype=dtype, count=len(e.ids))  # numpy refuses ids that do not fit
            for e in fast(texts, add_special_tokens=False)]


def _flatten(encoded: list[np.ndarray], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, all ids back to back)."""
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    return lengths, np.concatenate(encoded).astype(dtype, copy=False) if encoded else np.zeros(0, dtype)


def build_domain_cache(
    domain: str,
    files: list[Path],
    *,
    cache_root: Path,
    tokenizer: Tokenizer,
    dtype: np.dtype,
    fp: str,
    batch_bytes: int,
    progress: Callable[[str], None] | None = None,
) -> DomainCache:
    """Tokenize ``files`` (Parquet with doc_id, text) into ``cache_root/domain=<domain>``."""
    final = cache_root / f"domain={domain}"
    existing = final / "meta.json"
    if existing.exists():
        try:
            if json.loads(existing.read_text()).get("fingerprint") == fp:
                return open_cache(final)
        except (OSError, ValueError):
            pass
    require_free(cache_root, cache_bytes_at_least(files, tokenizer, dtype))
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".domain={domain}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        names = ("tokens.bin", "text.bin", "doc_ids.bin", *OFFSET_FILES)
        with contextlib.ExitStack() as stack, ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
            tok_f, text_f, id_f, tok_off_f, text_off_f, id_off_f = (stack.enter_context(open(tmp / n, "wb"))
                                                                     for n in names)
            ends = {"tokens": 0, "text": 0, "ids": 0}
            for f in (tok_off_f, text_off_f, id_off_f):
                f.write(np.zeros(1, np.int64).tobytes())
            documents = 0

            def append(kind: str, f, offsets: np.ndarray) -> None:
                """Write a batch's per-document end offsets of ``kind``, continuing from the previous batch."""
                f.write((ends[kind] + offsets).astype(np.int64).tobytes())
                ends[kind] += int(offsets[-1]) if len(offsets) else 0

            def consume(ids: pa.Array, text: pa.Array, future) -> None:
                nonlocal documents
                lengths, flat = _flatten(future.result(), np.dtype(dtype))
                tok_f.write(flat.tobytes())
                append("tokens", tok_off_f, np.cumsum(lengths))
                # Copy the UTF-8 straight out of the Arrow buffers (no re-encoding in Python).
                for column, kind, out_f, off_f in ((text, "text", text_f, text_off_f), (ids, "ids", id_f, id_off_f)):
                    offs = np.frombuffer(column.buffers()[1], dtype=np.int64)[
                        column.offset: column.offset + len(column) + 1]
                    if offs[-1] > offs[0]:  # an all-empty column may have no data buffer
                        out_f.write(memoryview(column.buffers()[2])[int(offs[0]): int(offs[-1])])
                    append(kind, off_f, offs[1:] - offs[0])
                documents += len(ids)
                if progress:
                    progress(f"tokenized {domain}: {documents} documents, {ends['tokens']} tokens")

            pending = None
            for ids, text in _text_batches(files, batch_bytes=batch_bytes):
                future = pool.submit(_encode, tokenizer, text.to_pylist(), np.dtype(dtype))
                if pending is not None:
                    consume(*pending)  # while the tokenizer works on the next chunk
                pending = (ids, text, future)
            if pending is not None:
                consume(*pending)
            for f in (tok_f, text_f, id_f, tok_off_f, text_off_f, id_off_f):
                f.flush()
                os.fsync(f.fileno())
        meta = {"domain": domain, "fingerprint": fp, "dtype": np.dtype(dtype).name, "documents": documents,
                "tokens": ends["tokens"], "text_bytes": ends["text"], "files": [str(f) for f in files]}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return open_cache(final)


def clean_stale(cache_root: Path) -> None:
    """Remove temporary folders left by an interrupted run (finished caches stay)."""
    if cache_root.exists():
        for p in cache_root.glob(".domain=*"):
            shutil.rmtree(p, ignore_errors=True)


__all__ = ["DomainCache", "build_domain_cache", "clean_stale", "file_sha256", "fingerprint", "open_cache"]
