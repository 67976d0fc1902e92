"""Streaming readers for raw corpora: one function per format, one uniform contract.

A reader yields ``RawRow(row, text, reason, detail)`` for every row it reads, in file order, without
holding the file in memory. ``row`` is 1-based (the line number for JSONL, the row number for
Parquet, 1 for a whole text file). Exactly one of ``text`` and ``reason`` is set: per-row problems
are reported, not raised, so that staging can record them as rejects. Whole-file problems
(unreadable path, truncated or corrupt archive, missing Parquet column) raise ``BadFileError``.
"""

from __future__ import annotations

import gzip
import io
import string
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from pipeline.config.staging import SourceConfig
from pipeline.spec import source_format

_READ_CHUNK = 1 << 20
# Parquet read batches are capped near this many (uncompressed) bytes as well as at batch_rows:
# a batch of long documents (source files) would otherwise hold a large part of the file at once.
_PARQUET_BATCH_BYTES = 4 << 20


class BadFileError(Exception):
    """A whole file cannot be read; carries the file, the reason code and the 1-based row reached."""

    def __init__(self, path: Path, reason: str, detail: str, rows_read: int = 0):
        self.path = Path(path)
        self.reason = reason
        self.detail = detail
        self.rows_read = rows_read
        super().__init__(f"{path}: {reason}: {detail}" + (f" (after row {rows_read})" if rows_read else ""))


@dataclass(frozen=True, slots=True)
class RawRow:
    row: int
    text: str | None
    reason: str | None = None
    detail: str | None = None
    # The raw bytes or value of a rejected row, for the rejects excerpt.
    raw: str | None = None


class TextRenderer:
    """Turns a decoded record into document text: one field, or a template over several."""

    def __init__(self, source: SourceConfig):
        self.template = source.template
        if self.template is not None:
            self.fields = [f for _, f, _, _ in string.Formatter().parse(self.template) if f]
            if not self.fields:
                raise ValueError(f"source {source.name!r}: template names no field")
        else:
            self.fields = [source.text_field]

    def __call__(self, record: dict) -> tuple[str | None, str | None, str | None]:
        """Return (text, reason, detail)."""
        if self.template is None:
            value = record.get(self.fields[0], _MISSING)
            if value is _MISSING or value is None:
                return None, "missing_field", f"no field {self.fields[0]!r}"
            if not isinstance(value, str):
                return None, "text_not_string", f"field {self.fields[0]!r} is {type(value).__name__}"
            return value, None, None
        for name in self.fields:
            if record.get(name) is None:
                return None, "missing_field", f"template field {name!r} is missing"
        return self.template.format_map(record), None, None


_MISSING = object()


def _excerpt(raw: bytes, limit: int = 400) -> str:
    return raw[:limit].decode("utf-8", errors="replace")


def _open_lines(path: Path, fmt: str) -> io.BufferedIOBase:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller through the wrapper
    if fmt == "jsonl":
        return raw
    if fmt == "jsonl.gz":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if fmt == "jsonl.zst":
        return io.BufferedReader(_ZstdFrames(raw), buffer_size=_READ_CHUNK)
    raise ValueError(fmt)


class _ZstdFrames(io.RawIOBase):
    """Decompresses a sequence of zstd frames and, unlike zstandard's stream_reader, raises when
    the file ends inside a frame: a truncated archive must not pass for a shorter complete one."""

    def __init__(self, raw: io.BufferedIOBase):
        self.raw = raw
        self.decompressor = zstandard.ZstdDecompressor()
        self.frame = self.decompressor.decompressobj()
        self.in_frame = False
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            chunk = self.raw.read(_READ_CHUNK)
            if not chunk:
                if self.in_frame:
                    raise zstandard.ZstdError("the file ends inside a zstd frame (truncated archive)")
                return 0
            out = []
            while chunk:
                self.in_frame = True
                out.append(self.frame.decompress(chunk))
                if self.frame.eof:
                    chunk = self.frame.unused_data
                    self.frame = self.decompressor.decompressobj()
                    self.in_frame = False
                else:
                    chunk = b""
            self.pending = b"".join(out)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def read_jsonl(path: Path, fmt: str, render: TextRenderer) -> Iterator[RawRow]:
    line_no = 0
    try:
        stream = _open_lines(path, fmt)
    except OSError as exc:
        raise BadFileError(path, "unreadable", exc.strerror or str(exc)) from None
    with stream:
        try:
            for line_no, line in enumerate(stream, start=1):
                if line.isspace():  # = not line.strip() (a line is never b""), without a copy
                    yield RawRow(line_no, None, "blank_line", "the line is empty", "")
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    try:
                        line.decode("utf-8")
                    except UnicodeDecodeError as uexc:
                        yield RawRow(line_no, None, "invalid_utf8", f"byte {uexc.start}: {uexc.reason}", _excerpt(line))
                    else:
                        yield RawRow(line_no, None, "malformed_json", str(exc), _excerpt(line))
                    continue
                if not isinstance(record, dict):
                    yield RawRow(line_no, None, "not_an_object", f"a JSON {type(record).__name__}", _excerpt(line))
                    continue
                try:
                    text, reason, detail = render(record)
                except (ValueError, IndexError, KeyError) as exc:  # a template the record cannot fill
                    yield RawRow(line_no, None, "template_error", str(exc), _excerpt(line))
                    continue
                yield RawRow(line_no, text, reason, detail, None if text is not None else _excerpt(line))
        except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as exc:
            raise BadFileError(path, "corrupt_archive", f"{type(exc).__name__}: {exc}", line_no) from None
        except OSError as exc:
            raise BadFileError(path, "unreadable", f"{exc}", line_no) from None


def read_parquet(path: Path, render: TextRenderer, batch_rows: int) -> Iterator[RawRow]:
    try:
        handle = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise BadFileError(path, "unreadable", str(exc)) from None
    names = set(handle.schema_arrow.names)
    missing = [f for f in render.fields if f not in names]
    if missing:
        raise BadFileError(
            path, "missing_column", f"no column {missing[0]!r} (columns: {', '.join(sorted(names))})"
        )
    row = 0
    try:
        for batch in handle.iter_batches(batch_size=_parquet_batch_rows(handle, batch_rows), columns=render.fields):
            columns = [batch.column(f).to_pylist() for f in render.fields]
            for values in zip(*columns):
                row += 1
                record = dict(zip(render.fields, values))
                text, reason, detail = render(record)
                raw = None if text is not None else repr(record)[:400]
                yield RawRow(row, text, reason, detail, raw)
    except (OSError, pa.ArrowException) as exc:
        raise BadFileError(path, "corrupt_file", str(exc), row) from None


def _parquet_batch_rows(handle: pq.ParquetFile, batch_rows: int) -> int:
    """``batch_rows``, or fewer where the file's mean row size would make a batch exceed the byte cap."""
    meta = handle.metadata
    if meta.num_rows == 0:
        return batch_rows
    total = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return max(1, min(batch_rows, _PARQUET_BATCH_BYTES * meta.num_rows // max(total, 1)))


def read_text_file(path: Path) -> Iterator[RawRow]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadFileError(path, "unreadable", exc.strerror or str(exc)) from None
    try:
        yield RawRow(1, data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        yield RawRow(1, None, "invalid_utf8", f"byte {exc.start}: {exc.reason}", _excerpt(data))


def read_source_file(source: SourceConfig, path: Path, *, batch_rows: int = 4096) -> Iterator[RawRow]:
    """Every row of one file of ``source``, in order."""
    fmt = source_format(source, path)
    if fmt == "text":
        return read_text_file(path)
    render = TextRenderer(source)
    if fmt == "parquet":
        return read_parquet(path, render, batch_rows)
    if fmt in ("jsonl", "jsonl.gz", "jsonl.zst"):
        return read_jsonl(path, fmt, render)
    raise BadFileError(path, "unknown_format", f"cannot read format {fmt!r}")
