"""Run a workload in its own process and measure it: wall time and peak resident memory.

Reusable by any benchmark that compares implementations side by side (``run_measured`` in the
parent, ``emit`` in the child). The peak memory is the child's ``ru_maxrss`` as returned by
``os.wait4`` for *that* child alone: unlike ``resource.getrusage(RUSAGE_CHILDREN)``, which keeps
the maximum over every child ever waited for, it does not carry a previous run's peak into the
next one. Linux folds the peaks of the child's own (waited-for) descendants into it, so helper
processes a library spawns are counted. The child is started through a small launcher process,
because a process's peak-RSS record starts from its parent's RSS at spawn time.

The child reports its own figures by printing one JSON object as its last stdout line; the
parent adds ``process_wall_s`` (fork to exit), ``process_cpu_s`` and ``peak_rss_mib``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class ChildFailed(RuntimeError):
    """The measured child exited with a non-zero status; the message holds its stderr tail."""


# A tiny launcher between us and the measured child. Linux starts a new process's peak-RSS record
# from its parent's RSS at fork/exec time, so a child spawned straight from a large benchmark
# process would report at least the parent's size; the launcher is ~10 MiB, below any Python child.
_LAUNCHER = """
import json, os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    json.dump({"maxrss_kib": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}, f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


# The start of a measured child given as ``python -c`` source (before/after benchmarks run the same child against
# another revision's code): its JSON argument as ``args``, and ``status(field)``: a /proc/self/status value in MiB.
CHILD_PRELUDE = r"""
import gc, json, sys, time
from pathlib import Path
args = json.loads(sys.argv[1])


def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))
"""


def run_measured(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path = REPO) -> dict:
    """Run ``argv`` to completion; return its last stdout JSON line plus wall time, CPU time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="measure-") as tmp:
        usage_path = Path(tmp) / "usage.json"
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-I", "-c", _LAUNCHER, str(usage_path), *argv], cwd=cwd, env=env,
                              capture_output=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise ChildFailed(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')[-4000:]}")
        usage = json.loads(usage_path.read_text())
    lines = [line for line in proc.stdout.decode().splitlines() if line.strip()]
    figures = json.loads(lines[-1]) if lines else {}
    figures["process_wall_s"] = round(wall, 3)
    figures["peak_rss_mib"] = round(usage["maxrss_kib"] / 1024, 1)  # Linux reports KiB
    # CPU seconds (user + system, all threads): steadier than wall time on a shared, busy machine.
    figures["process_cpu_s"] = round(usage["cpu_s"], 3)
    return figures


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


def code_at(rev: str, folder: Path) -> Path:
    """A checkout of git revision ``rev`` in a worktree under ``folder`` (made once, reused): the peer of a
    before/after benchmark, run side by side with the current code (``PYTHONPATH`` set to it)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, check=True, capture_output=True,
                         text=True).stdout.strip()
    tree = Path(folder) / f"baseline-{sha}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], cwd=REPO, check=True,
                       capture_output=True)
    return tree
