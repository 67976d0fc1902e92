"""Spec sections owned by staging: the sources and how bad input is handled."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

SourceFormat = Literal["jsonl", "jsonl.gz", "jsonl.zst", "parquet", "text"]

DEFAULT_TEXT_EXTENSIONS = (".txt", ".md")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class SourceConfig:
    """One raw corpus: a file, a glob or a folder, mapped to a domain."""

    name: str
    path: str
    domain: str
    # Detected from the file name when omitted: .jsonl, .jsonl.gz, .jsonl.zst, .parquet, or a
    # folder / .txt / .md files for "text" (one document per file).
    format: SourceFormat | None = None
    # The file name endings a folder source reads as text, one document per file (case-insensitive), e.g.
    # [.rst, .txt, .adoc, .tex, .py]; also what a file or glob match with such an ending is read as.
    extensions: list[str] = field(default_factory=lambda: list(DEFAULT_TEXT_EXTENSIONS))
    # The field holding the text; ignored for "text" sources and when a template is given.
    text_field: str = "text"
    # A str.format template over record fields, e.g. "Question: {question}\nAnswer: {answer}".
    template: str | None = None
    license: str | None = None

    def __post_init__(self) -> None:
        for ext in self.extensions:
            if not re.match(r"^\.[^/\\\s]+$", ext):
                raise ValueError(f"extensions: {ext!r} must be a file name ending with its dot, e.g. '.rst'")
        if not self.extensions:
            raise ValueError("extensions must name at least one ending, e.g. [.txt, .md]")
        for key in ("name", "domain"):
            if not _NAME.match(getattr(self, key)):
                raise ValueError(
                    f"{key} {getattr(self, key)!r} must be lower-case letters, digits, '_' or '-'"
                )


@dataclass(frozen=True)
class StagingConfig:
    # What a whole-file problem (truncated archive, missing column, unreadable path) does:
    # "fail" stops the run with an error naming the file; "quarantine" moves every row read
    # from that file into the rejects with the file's reason and goes on.
    on_bad_file: Literal["fail", "quarantine"] = "fail"
    # Documents larger than this (UTF-8 bytes) are rejected as "too_large".
    max_doc_bytes: int = 16_000_000
    # Rows per Parquet row group; also the streaming batch size.
    batch_rows: int = 4096
    excerpt_chars: int = 200
    # zstd level of the staged Parquet files: 1 stages ~1.3x faster than 3 for ~15% larger files
    # (bench/RESULTS.md, staging); staged files are intermediate, so speed wins by default.
    compression_level: int = 1

    def __post_init__(self) -> None:
        if self.max_doc_bytes <= 0 or self.batch_rows <= 0:
            raise ValueError("max_doc_bytes and batch_rows must be positive")


def reads_as_text(source: SourceConfig, path) -> bool:
    """Whether a file of ``source`` is one text document by its name (``extensions``, case-insensitive)."""
    name = str(path).lower()
    return any(name.endswith(ext.lower()) for ext in source.extensions)
