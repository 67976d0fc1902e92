"""A full disk said in one line: the path, the bytes needed and the bytes free.

Two halves. Before a large write whose size can be bounded from below (token caches, token bins, a training
set), ``require_free`` refuses to start when the file system holds less than that bound. During any write,
``disk_full_guard`` turns ENOSPC / EDQUOT and numpy's short writes ("24018 requested and 16274 written") into
``DiskFullError``, whose message is that one line. Writers keep their own crash contract (temporary names,
removed in ``finally``), so a refused or failed write leaves nothing partial behind.

``disk_full_message`` finds such a failure anywhere in an exception chain (Dagster wraps the asset's error),
for the command line to print it instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")
_NO_SPACE_TEXT = ("no space left on device", "disk quota exceeded", "os error 28")


class DiskFullError(OSError):
    """The file system at ``path`` has ``free`` bytes; the write needed ``needed`` (at least)."""

    def __init__(self, path: str | os.PathLike, *, needed: int | None, free: int, under: bool = False):
        self.path, self.needed, self.free = Path(path), needed, free
        need = f"needs at least {needed:,} bytes" if needed else "needs more space"
        where = f"under {self.path} (the error named no file)" if under else str(self.path)
        self.message = (f"no space left on device: writing {where} {need}, {free:,} bytes are free "
                        f"(free space on that file system, or point the data root elsewhere)")
        super().__init__(errno.ENOSPC, self.message)

    def __str__(self) -> str:
        return self.message


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``path`` (or its nearest existing
    ancestor: the folder may not exist yet)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def require_free(path: str | os.PathLike, needed: int) -> None:
    """Refuse, before writing, a write of at least ``needed`` bytes that the file system cannot hold."""
    free = free_bytes(path)
    if needed > free:
        raise DiskFullError(path, needed=int(needed), free=free)


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return bool(_SHORT_WRITE.search(text)) or any(t in text for t in _NO_SPACE_TEXT)


def as_disk_full(exc: BaseException, path: str | os.PathLike, needed: int | None = None) -> DiskFullError:
    """``exc`` (a disk-full failure) as a ``DiskFullError`` naming the file it hit, or ``path``."""
    if isinstance(exc, DiskFullError):
        return exc
    where = getattr(exc, "filename", None) or path
    short = _SHORT_WRITE.search(str(exc))
    if needed is None and short:
        needed = int(short.group(1)) - int(short.group(2))  # what the last write still lacked
    return DiskFullError(where, needed=needed, free=free_bytes(where))


@contextmanager
def disk_full_guard(path: str | os.PathLike, needed: int | None = None) -> Iterator[None]:
    """Re-raise a disk-full failure inside the block as one ``DiskFullError`` line about ``path``."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, DiskFullError) or not is_disk_full(exc):
            raise
        raise as_disk_full(exc, path, needed) from exc


def disk_full_message(exc: BaseException | None, *, fallback: str | os.PathLike | None = None) -> str | None:
    """The one-line message of a disk-full failure anywhere in ``exc``'s chain (Dagster's wrappers included):
    a ``DiskFullError``'s own, else one made from the innermost disk-full error, about the file it names or,
    when it names none (a buffered write), the folder ``fallback`` (the data root)."""
    seen, innermost = set(), None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return exc.message
        if is_disk_full(exc):
            innermost = exc
        exc = getattr(exc, "user_exception", None) or exc.__cause__ or exc.__context__
    if innermost is None:
        return None
    named = getattr(innermost, "filename", None)
    if named:
        return as_disk_full(innermost, named).message
    where = Path(fallback or os.getcwd())
    return DiskFullError(where, needed=None, free=free_bytes(where), under=True).message


def min_token_bytes(text_bytes: int, *, longest_token_bytes: int, itemsize: int) -> int:
    """A lower bound on the bytes of ``text_bytes`` of text as tokens: no token covers more bytes than the
    vocabulary's longest entry."""
    return -(-text_bytes // max(1, longest_token_bytes)) * itemsize


def longest_token_bytes(tokenizer) -> int:
    """The UTF-8 length of the tokenizer's longest vocabulary entry (a byte-level entry's characters stand for
    at most as many bytes, so this bounds the text one token covers)."""
    return max((len(t.encode("utf-8")) for t in tokenizer.get_vocab(with_added_tokens=False)), default=1)


__all__ = ["DiskFullError", "as_disk_full", "disk_full_guard", "disk_full_message", "free_bytes", "is_disk_full",
           "longest_token_bytes", "min_token_bytes", "require_free"]
