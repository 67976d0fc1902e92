"""Run a workload in its own process and measure it: wall time and peak resident memory.

Reusable by any benchmark that compares two implementations side by side. The peak memory is the
child's ``ru_maxrss`` as returned by ``os.wait4`` for *that* child alone: unlike
``resource.getrusage(RUSAGE_CHILDREN)``, which keeps the maximum over every child ever waited
for, it does not carry a previous run's peak into the next one. Linux folds the peaks of the
child's own (waited-for) descendants into it, so helper processes a library spawns are counted.

The child reports its own figures by printing one JSON object as its last stdout line; the
parent adds ``process_wall_s`` (fork to exit) and ``peak_rss_mib``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class ChildFailed(RuntimeError):
    """The measured child exited with a non-zero status; the message holds its stderr tail."""


def run_measured(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path = REPO) -> dict:
    """Run ``argv`` to completion; return its last stdout JSON line plus wall time and peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # communicate() drains the pipes (a full pipe would block the child); the reaping is ours,
    # so that wait4 returns this child's own rusage.
    out, err = _drain(proc)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise ChildFailed(f"{' '.join(argv)} exited {proc.returncode}:\n{err.decode(errors='replace')[-4000:]}")
    lines = [line for line in out.decode().splitlines() if line.strip()]
    figures = json.loads(lines[-1]) if lines else {}
    figures["process_wall_s"] = round(wall, 3)
    figures["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)  # Linux reports KiB
    return figures


def _drain(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """Read stdout and stderr to EOF without reaping the child (threads, as communicate does)."""
    import threading

    chunks: dict[str, bytes] = {}

    def read(name: str, stream) -> None:
        chunks[name] = stream.read()
        stream.close()

    threads = [threading.Thread(target=read, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return chunks["out"], chunks["err"]


def self_peak_rss_mib() -> float:
    """This process's peak RSS so far (VmHWM), e.g. right after imports as a baseline."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def emit(figures: dict) -> None:
    """The child's side of the contract: one JSON object as the last stdout line."""
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def python_env(**extra: str) -> dict[str, str]:
    """The parent's environment plus ``extra``, with the repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env
