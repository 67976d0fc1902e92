"""Temporary work folders that a crashed run left behind, and which of them may go.

Every stage builds its output under a temporary name (``domain=web.tmp-1a2b3c4d``, ``.work-1a2b3c4d``,
``reference_proxy.tmp-...``, a replaced folder's ``.old-...``) and renames it into place, so a crash
leaves such a name behind but never a half-written output. They are removed when the stage next starts,
but only when no live run can own them: each run of a stage holds a *lease* (a small JSON file under
``<data_root>/.curamix/leases/`` with its pid, host and the process's start time), and the folder is
swept only when every other lease on it belongs to a process that no longer exists on this host (a
lease from another host counts as live: its process cannot be checked from here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipeline.layout import Layout

# The temporary names the stages use: <name>.tmp-<8 hex>, .work-<8 hex>, <name>.old-<8 hex> (and suffixed).
WORK_NAME = re.compile(r"(^|\.)(tmp|work|old)-[0-9a-f]{8}(\.|$)")
LEASES = Layout.at("").leases  # relative to a data root


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart); None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = _process_start(pid)
    return started is None or now is None or now == started


@dataclass(frozen=True)
class Lease:
    path: Path
    folder: str
    pid: int
    host: str
    started: str | None

    def live(self) -> bool:
        if self.host != socket.gethostname():
            return True
        return _alive(self.pid, self.started)


def _leases(root: Path, folder: str) -> list[Lease]:
    found = []
    for path in Layout.at(root).leases.glob(f"{folder}@*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # half-written by a process killed mid-write: not a claim
        found.append(Lease(path, folder, int(data["pid"]), str(data["host"]), data.get("started")))
    return found


def take_lease(root: str | os.PathLike, folder: str) -> Path:
    """Record that this process works in ``<root>/<folder>``; returns the lease file (release it after)."""
    base = Layout.at(root).leases
    base.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    path = base / f"{folder}@{uuid.uuid4().hex[:12]}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": _process_start(pid)}))
    tmp.replace(path)
    return path


def release_lease(lease: Path) -> None:
    lease.unlink(missing_ok=True)


def work_leftovers(root: str | os.PathLike, folder: str) -> list[Path]:
    """Temporary names in ``<root>/<folder>`` (any depth) and next to it (``<folder>.tmp-...``)."""
    root = Path(root)
    found = [p for p in root.glob(f"{folder}.*") if WORK_NAME.search(p.name[len(folder):])]
    base = root / folder
    if base.is_dir():
        for dirpath, dirnames, filenames in os.walk(base):
            for name in list(dirnames):
                if WORK_NAME.search(name):
                    found.append(Path(dirpath) / name)
                    dirnames.remove(name)  # its content goes with it
            found += [Path(dirpath) / n for n in filenames if WORK_NAME.search(n)]
    return sorted(found)


def clean_stale_work(root: str | os.PathLike, folder: str, *, own_lease: Path | None = None) -> list[Path]:
    """Remove ``folder``'s leftovers when no other live run holds a lease on it; returns what was removed.
    Leases of dead processes are removed too."""
    others = [lease for lease in _leases(Path(root), folder) if lease.path != own_lease]
    live = []
    for lease in others:
        if lease.live():
            live.append(lease)
        else:
            release_lease(lease.path)
    if live:
        return []
    removed = work_leftovers(root, folder)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed


__all__ = ["WORK_NAME", "clean_stale_work", "release_lease", "take_lease", "work_leftovers"]
