"""Where stage outputs live under the data root, and how they are written safely.

Layout: ``<root>/<stage>/domain=<domain>/`` holds one domain's output of a stage (``data/*.parquet``,
``rejects.parquet``, ``stats.json``). A domain's folder is built under a temporary name and renamed
into place, so a crash leaves either the previous complete output or none, never a half.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from pipeline.diskspace import as_disk_full, is_disk_full
from pipeline.layout import Layout
from pipeline.schema import DOCUMENT_SCHEMA, REJECT_SCHEMA


class DataRoot:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.layout = Layout(self.root)

    def stage_dir(self, stage: str) -> Path:
        return self.layout.stage(stage)

    def domain_dir(self, stage: str, domain: str) -> Path:
        return self.layout.domain(stage, domain)

    def domains(self, stage: str) -> list[str]:
        base = self.stage_dir(stage)
        if not base.exists():
            return []
        return sorted(p.name.split("=", 1)[1] for p in base.glob("domain=*") if p.is_dir() and ".tmp-" not in p.name)

    def data_files(self, stage: str, domains: list[str] | None = None) -> list[Path]:
        domains = self.domains(stage) if domains is None else domains
        return sorted(f for d in domains for f in self.layout.domain_parts(stage, d).glob("*.parquet"))

    def scan(self, stage: str, domains: list[str] | None = None) -> pl.LazyFrame:
        """All documents of a stage as one lazy frame (empty, with the canonical schema, if none)."""
        files = self.data_files(stage, domains)
        if not files:
            return pl.LazyFrame(schema=pl.Schema(pl.from_arrow(DOCUMENT_SCHEMA.empty_table()).schema))
        return pl.scan_parquet(files, hive_partitioning=False)

    def scan_rejects(self, stage: str, domains: list[str] | None = None) -> pl.LazyFrame:
        domains = self.domains(stage) if domains is None else domains
        files = [p for d in domains if (p := self.layout.domain_rejects(stage, d)).exists()]
        if not files:
            return pl.LazyFrame(schema=pl.Schema(pl.from_arrow(REJECT_SCHEMA.empty_table()).schema))
        return pl.scan_parquet(files, hive_partitioning=False)

    def read_stats(self, stage: str, domain: str) -> dict:
        return json.loads(self.layout.domain_stats(stage, domain).read_text())

    def write_domain(self, stage: str, domain: str):
        """Yield a fresh temporary folder; on success it replaces the domain's output atomically."""
        return atomic_dir(self.domain_dir(stage, domain))


def temp_name(final: Path) -> Path:
    """A unique sibling of ``final`` for building it (same file system, so the rename is atomic)."""
    return final.with_name(f"{final.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; when the block succeeds it replaces ``final``
    (see ``replace_dir``); when it raises, the temporary folder is removed and ``final`` is untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, final)
    except Exception as exc:
        if is_disk_full(exc):  # one line: the folder, the bytes free (the temporary goes below)
            raise as_disk_full(exc, tmp) from exc
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` to write; on success it is renamed onto ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished folder ``tmp`` in place of ``final``. ``final`` is moved aside before the rename
    (directories cannot be swapped in one call), so at every moment it is either the old complete
    folder, absent for an instant, or the new complete one."""
    old = None
    if final.exists():
        old = final.with_name(f"{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, payload: dict) -> None:
    """Write JSON through a temporary file and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
