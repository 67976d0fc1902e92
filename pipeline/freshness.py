"""Which domains' raw files differ from what staging last materialized.

A file is identified by its sha256. Re-hashing a whole corpus on every sensor tick would cost as
much as staging it, so ``(size, mtime_ns)`` only decides whether the sha256 must be recomputed (the
stat shortcut make and rsync take); a touched file whose bytes did not change is therefore no change.

A domain is *changed* when the sha256 multiset of its sources' files now differs from the one that
staging recorded in ``documents/domain=<d>/stats.json`` (its ``file_sha256``), or when the domain was
never staged. Comparing against what was materialized, not against the previous tick, means a
change made while nothing was watching is still seen, and a partition re-staged from the UI is not
requested twice. File names are not part of the comparison: renaming a file without changing its
bytes changes no document.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.spec import Spec
from pipeline.store import DataRoot, file_sha256 as _sha256

STAGE = "documents"


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    sha256: str

    def to_list(self) -> list:
        return [self.size, self.mtime_ns, self.sha256]

    @classmethod
    def from_list(cls, values: list) -> FileState:
        size, mtime_ns, sha256 = values
        return cls(int(size), int(mtime_ns), str(sha256))


def file_states(spec: Spec, previous: Mapping[str, FileState] | None = None) -> dict[str, FileState]:
    """Current state of every file the spec names; sha256 reused where size and mtime are unchanged."""
    previous = previous or {}
    states: dict[str, FileState] = {}
    for source in spec.sources:
        for path in spec.source_files[source.name]:
            key = str(path)
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue  # vanished between the glob and the stat: the next tick sees the new listing
            old = previous.get(key)
            if old is not None and old.size == stat.st_size and old.mtime_ns == stat.st_mtime_ns:
                states[key] = old
            else:
                states[key] = FileState(stat.st_size, stat.st_mtime_ns, _sha256(path))
    return states


def fingerprint(hashes_by_source: Mapping[str, list[str]]) -> str:
    """A short digest of {source: sorted sha256 list}; equal iff the same sources hold the same bytes."""
    canonical = {name: sorted(hashes) for name, hashes in hashes_by_source.items()}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:16]


def current_fingerprints(spec: Spec, states: Mapping[str, FileState]) -> dict[str, str]:
    """Per domain, the fingerprint of the files the spec names now."""
    result = {}
    for domain in spec.domains:
        by_source = {
            s.name: [states[str(p)].sha256 for p in spec.source_files[s.name] if str(p) in states]
            for s in spec.sources_for(domain)
        }
        result[domain] = fingerprint(by_source)
    return result


def materialized_fingerprint(root: DataRoot, domain: str) -> str | None:
    """The fingerprint of the files staging read for ``domain`` (None: never staged)."""
    try:
        stats = root.read_stats(STAGE, domain)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return fingerprint({name: list(s.get("file_sha256", {}).values()) for name, s in stats["sources"].items()})


@dataclass(frozen=True)
class DomainChange:
    domain: str
    fingerprint: str
    reason: str  # "never staged" | "raw files changed"


def changed_domains(spec: Spec, root: DataRoot, states: Mapping[str, FileState]) -> list[DomainChange]:
    """Domains whose raw files differ from their last staged version, in the spec's domain order."""
    changes = []
    for domain, now in current_fingerprints(spec, states).items():
        staged = materialized_fingerprint(root, domain)
        if staged != now:
            changes.append(DomainChange(domain, now, "never staged" if staged is None else "raw files changed"))
    return changes


__all__ = [
    "DomainChange",
    "FileState",
    "changed_domains",
    "current_fingerprints",
    "file_states",
    "fingerprint",
    "materialized_fingerprint",
]
