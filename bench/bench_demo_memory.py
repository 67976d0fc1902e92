"""Peak memory of the demo: `curamix run examples/default/spec.yaml` on a fresh data root (issue 12's goal: < 1.5 GB).

`python -m bench.run demo_memory` runs the whole graph in a measured child process (as `make demo` does, through
``assets.runner.run_all``) and reports

- ``peak_rss_mib``: the child's peak RSS as ``/usr/bin/time -v`` reports it (the largest single process; Linux
  folds waited-for descendants' peaks in as a maximum, not a sum);
- ``tree_peak_mib``: the largest *sum* of RSS over the child and all its descendants, sampled every 0.2 s
  (worker processes, if any, counted together with the main one);
- ``steps``: per Dagster step (asset, partition) the main process's own peak RSS during that step (VmHWM,
  reset before each step through ``/proc/self/clear_refs``), which says which asset holds the memory.

``--quick`` is the same run (the demo is already small). The data root is a fresh temporary folder.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from bench._measure import REPO, run_measured

SPEC = REPO / "examples" / "default" / "spec.yaml"

CHILD = r"""
import json, os, sys, threading, time
from pathlib import Path

def status(pid, field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0

def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(c) for t in os.listdir(f"/proc/{p}/task") for c in open(f"/proc/{p}/task/{t}/children").read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out

tree_peak = [0]
stop = threading.Event()
def sample():
    me = os.getpid()
    while not stop.wait(0.2):
        tree_peak[0] = max(tree_peak[0], sum(status(p, "VmRSS:") for p in [me, *descendants(me)]))
threading.Thread(target=sample, daemon=True).start()

from assets.runner import run_all
steps, current = [], {"name": "imports", "t": time.perf_counter()}
def close_step():
    steps.append({"step": current["name"], "peak_rss_mib": status("self", "VmHWM:"),
                  "seconds": round(time.perf_counter() - current["t"], 1)})
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM: the next step's peak starts from the RSS now
def on_step(step, done, total):
    close_step()
    current["name"] = ",".join(k.to_user_string() for k in step.asset_keys) + (f"[{step.partition_key}]" if step.partition_key else "")
    current["t"] = time.perf_counter()
run_all(sys.argv[1], data_root=sys.argv[2], on_step=on_step, log_level="WARNING")
close_step()
stop.set()
mixture = json.loads(Path(sys.argv[2], "mixture", "mixture.json").read_text())
print(json.dumps({"steps": steps, "tree_peak_mib": tree_peak[0], "proportions": mixture.get("proportions")}))
"""


def run(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="demo-memory-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO), "DAGSTER_HOME": "", "CURAMIX_DATA_ROOT": ""}
        env = {k: v for k, v in env.items() if v != ""}
        figures = run_measured([sys.executable, "-c", CHILD, str(SPEC), str(Path(tmp) / "data")], env=env)
    steps = figures["steps"]
    top = sorted(steps, key=lambda s: -s["peak_rss_mib"])[:5]
    return {"command": "python -m bench.run demo_memory", "peak_rss_mib": figures["peak_rss_mib"],
            "tree_peak_mib": figures["tree_peak_mib"], "goal_mib": round(1.5e9 / 2**20, 1),
            "wall_s": figures["process_wall_s"], "cpu_s": figures["process_cpu_s"], "top_steps": top, "steps": steps,
            "proportions": figures["proportions"]}


def summarize(figures: dict) -> str:
    top = ", ".join(f"{s['step']} {s['peak_rss_mib']} MiB" for s in figures["top_steps"][:3])
    return (f"demo peak RSS {figures['peak_rss_mib']} MiB (largest process), {figures['tree_peak_mib']} MiB summed over "
            f"its processes (goal < {figures['goal_mib']} MiB); highest steps: {top}")


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
