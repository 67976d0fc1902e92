"""The Megatron indexed-dataset layout (``MMIDIDX``): a ``.bin`` of tokens and an ``.idx`` index.

Written from the format's description in Megatron-Core's ``indexed_dataset`` (all little-endian):

    .idx:  b"MMIDIDX\\x00\\x00"            9-byte magic
           u64  version = 1
           u8   dtype code (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16)
           u64  sequence count S
           u64  document-index count D (= documents + 1: the index starts with 0)
           i32[S]  sequence lengths (tokens)
           i64[S]  sequence pointers (byte offset of each sequence in .bin)
           i64[D]  document indices (sequence index where each document starts, then S)
    .bin:  the sequences' tokens, back to back, in the dtype above

We write one sequence per document (document indices ``0..N``), each ending with the EOS token, and
pick the dtype as Megatron does: uint16 when the vocabulary has fewer than 65,500 entries, else int32.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES: dict[str, int] = {
    "uint8": 1, "int8": 2, "int16": 3, "int32": 4, "int64": 5, "float64": 6, "float32": 7, "uint16": 8,
}
CODE_DTYPES = {code: np.dtype(name) for name, code in DTYPE_CODES.items()}
HEADER_BYTES = len(MAGIC) + 8 + 1 + 8 + 8


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """Megatron's choice: uint16 below 65,500 tokens (room for a few added specials), else int32."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


INDEX_CHUNK = 1 << 20  # sequences per write while an index is assembled


class IndexedDatasetWriter:
    """Streams documents into ``<prefix>.bin``; ``finish()`` writes ``<prefix>.idx``.

    The documents' lengths go to a sidecar file as they come (``<idx>.lengths``, removed by ``finish``), so
    memory does not grow with the documents of a shard. The caller owns naming (emission writes to temporary
    names and renames); this class only writes the files it is given.
    """

    def __init__(self, bin_path: Path, idx_path: Path, dtype: np.dtype):
        self.bin_path, self.idx_path = Path(bin_path), Path(idx_path)
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in DTYPE_CODES:
            raise ValueError(f"dtype {self.dtype} has no MMIDIDX code")
        self._lengths_path = self.idx_path.with_name(self.idx_path.name + ".lengths")
        self._bin = open(self.bin_path, "wb")
        self._lengths = open(self._lengths_path, "wb")
        self.tokens = 0
        self.documents = 0

    def add_documents(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Append documents given as one flat token array and their lengths (EOS already in place)."""
        tokens = np.ascontiguousarray(tokens, dtype=self.dtype)
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != len(tokens):
            raise ValueError("document lengths do not add up to the tokens given")
        if len(lengths) and (lengths.min() <= 0 or lengths.max() > np.iinfo(np.int32).max):
            raise ValueError("every document needs between 1 and 2**31-1 tokens")
        self._bin.write(tokens.tobytes())
        self._lengths.write(lengths.astype("<i4").tobytes())
        self.tokens += len(tokens)
        self.documents += len(lengths)

    def finish(self) -> None:
        self._bin.flush()
        os.fsync(self._bin.fileno())
        self._bin.close()
        self._lengths.close()
        lengths = np.memmap(self._lengths_path, dtype="<i4", mode="r") if self.documents else np.zeros(0, "<i4")
        write_index(self.idx_path, lengths, self.dtype)
        del lengths
        self._lengths_path.unlink()

    def abort(self) -> None:
        for f in (self._bin, self._lengths):
            if not f.closed:
                f.close()
        self._lengths_path.unlink(missing_ok=True)


def write_index(path: Path, lengths: np.ndarray, dtype: np.dtype) -> None:
    """Write an ``.idx`` for one-sequence-per-document data of the given lengths (an array or a memmap: it is
    read in chunks of ``INDEX_CHUNK``, so the index of any number of documents is written in bounded memory)."""
    n = len(lengths)
    itemsize = np.dtype(dtype).itemsize
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<Q", VERSION))
        f.write(struct.pack("<B", DTYPE_CODES[np.dtype(dtype).name]))
        f.write(struct.pack("<Q", n))
        f.write(struct.pack("<Q", n + 1))
        for a in range(0, n, INDEX_CHUNK):
            f.write(np.asarray(lengths[a: a + INDEX_CHUNK]).astype("<i4").tobytes())
        pointer = 0  # byte offset of each sequence in .bin: the running sum of the lengths before it
        for a in range(0, n, INDEX_CHUNK):
            sizes = np.asarray(lengths[a: a + INDEX_CHUNK], dtype=np.int64) * itemsize
            ends = pointer + np.cumsum(sizes)
            f.write(np.concatenate([[pointer], ends[:-1]]).astype("<i8").tobytes())
            pointer = int(ends[-1])
        for a in range(0, n + 1, INDEX_CHUNK):
            f.write(np.arange(a, min(n + 1, a + INDEX_CHUNK), dtype="<i8").tobytes())
        f.flush()
        os.fsync(f.fileno())


class IndexFormatError(ValueError):
    """An ``.idx`` that does not follow the layout; the message says what is wrong."""


@dataclass(frozen=True)
class Index:
    dtype: np.dtype
    lengths: np.ndarray  # int32[S]
    pointers: np.ndarray  # int64[S]
    document_indices: np.ndarray  # int64[D]

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum(dtype=np.int64))

    @property
    def documents(self) -> int:
        return len(self.document_indices) - 1


def read_index(path: Path) -> Index:
    """Parse an ``.idx``; raises ``IndexFormatError`` on a bad magic, version, dtype or size."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        raise IndexFormatError(f"{path.name}: {size} bytes is shorter than the {HEADER_BYTES}-byte header")
    if head[:9] != MAGIC:
        raise IndexFormatError(f"{path.name}: bad magic {head[:9]!r}")
    version, code, seqs, docs = struct.unpack("<QBQQ", head[9:])
    if version != VERSION:
        raise IndexFormatError(f"{path.name}: version {version}, expected {VERSION}")
    if code not in CODE_DTYPES:
        raise IndexFormatError(f"{path.name}: unknown dtype code {code}")
    expected = HEADER_BYTES + seqs * 4 + seqs * 8 + docs * 8
    if size != expected:
        raise IndexFormatError(f"{path.name}: {size} bytes, the header promises {expected}")
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    offset = HEADER_BYTES
    lengths = np.frombuffer(raw, dtype="<i4", count=seqs, offset=offset)
    offset += seqs * 4
    pointers = np.frombuffer(raw, dtype="<i8", count=seqs, offset=offset)
    offset += seqs * 8
    document_indices = np.frombuffer(raw, dtype="<i8", count=docs, offset=offset)
    return Index(CODE_DTYPES[code], lengths, pointers, document_indices)


def open_tokens(bin_path: Path, dtype: np.dtype) -> np.ndarray:
    """The ``.bin`` as a read-only memory map (empty array for an empty file)."""
    if Path(bin_path).stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(bin_path, dtype=dtype, mode="r")


__all__ = [
    "DTYPE_CODES", "Index", "IndexFormatError", "IndexedDatasetWriter", "MAGIC", "dtype_for_vocab",
    "open_tokens", "read_index", "write_index",
]
