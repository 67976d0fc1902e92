"""What grows with the number of documents of a domain: pruning's selection and writing shards, the token bins.

Workload: one domain of N short synthetic documents (12 words from a 5,000-word vocabulary; 1x, 4x, 16x,
``--quick``: 1x and 4x of a smaller N) in a curated part of 64k-document row groups, ``engine: inline``, each
stage and size in a fresh child; a stage's own memory is the child's high-water mark restarted
(``/proc/self/clear_refs``) after its setup, minus the RSS it started from.

- **pruning's selection** (``_select``: the pool loaded, checked against the curated files, DBP to half over
  100 clusters drawn at random, the drops table): the whole pool is in memory at once; its doc_ids and domains
  were Python lists (~150 bytes a document) and are Arrow columns now.
- **pruning's writing shards** (``PruningStage`` alone, after a selection that drops a seeded half): each
  shard copies the kept documents of its curated row groups and writes the dropped ones as rejects. It used
  to load every drop of its domain (a dict of rows, ~500 bytes each) and test each 1,024-document batch
  against all of them (a hash of every drop built per batch: quadratic in the domain); it now reads only the
  drops at its own pool positions.
- **token bins** (``build_bins``, 10% validation, the word-level tokenizer of ``bench_emission_memory``): the
  shards used to keep their index as Python lists and the global step ordered the domain's whole index in
  memory; now the shards write their index a batch at a time and DuckDB sorts it on disk.

``--baseline REV`` runs the same children against git revision ``REV`` (a worktree) in the same run.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from bench._measure import CHILD_PRELUDE, code_at, python_env, run_measured

REPO = Path(__file__).resolve().parent.parent
# Documents at 1x (``--quick``: at 1x of two sizes instead of three).
DOCUMENTS = 100_000
QUICK_DOCUMENTS = 25_000
WORK = REPO / "bench" / "work" / "document_count"
DOMAIN = "web"

# What every child shares: ``measured(run)`` restarts the high-water mark after the child's setup (its own
# peak from there), runs the stage, and prints the line ``run_measured`` reads.
MEASURE = CHILD_PRELUDE + r"""

def measured(run):
    gc.collect()
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    started = time.perf_counter()
    kept, dropped = run()
    print(json.dumps({"write_wall_s": round(time.perf_counter() - started, 2), "kept": kept, "dropped": dropped,
                      "rss_before_write_mib": round(before, 1), "write_peak_mib": round(status("VmHWM"), 1)}))
"""

# The writing stage only, through the API both revisions share; the selection's drops file gets a ``position``
# column where the code's DECISION_SCHEMA has one.
PRUNE_CHILD = MEASURE + r"""
import numpy as np, polars as pl
from pipeline.config.execution import ExecutionConfig
from pipeline.engine import run_stage
from pipeline.pruning import run as prune
from pipeline.store import DataRoot

root = DataRoot(Path(args["root"]))
gone = np.load(args["gone"])
ids = pl.read_parquet(root.data_files("curated", [args["domain"]]), columns=["doc_id"])["doc_id"]
drops = pl.DataFrame({"doc_id": ids.gather(gone)}).with_columns(
    domain=pl.lit(args["domain"]), reason=pl.lit("random"), detail=pl.lit("u=0.5"),
    duplicate_of=pl.lit(None, dtype=pl.String), position=pl.Series(gone.astype(np.int64)))
drops = drops.select([c for c in prune.DECISION_SCHEMA.names])  # the revision's columns, in its order
work = root.layout.work_dir("pruned")
path, sha = prune._store_drops(drops, work)
del ids, drops
stage = prune.PruningStage(root=root, domains=(args["domain"],), work_dir=work, drops=path, drops_sha256=sha,
                           method="random", target_fraction=0.5, excerpt_chars=200)


def run():
    stats = run_stage(stage, execution=ExecutionConfig(engine="inline"))[args["domain"]]
    return stats["rows_kept"], stats["rows_dropped"]


measured(run)
"""


BINS_CHILD = MEASURE + r"""
from tokenizers import Tokenizer
from pipeline.config.execution import ExecutionConfig
from pipeline.store import DataRoot
from proxies.bins import build_bins

root = DataRoot(Path(args["root"]))
tokenizer = Tokenizer.from_file(args["tokenizer"])


def run():
    meta = build_bins(root, "curated", [args["domain"]], Path(args["out"]), tokenizer=tokenizer,
                      tokenizer_sha256="bench", validation_fraction=0.1, seed=3, execution=ExecutionConfig(engine="inline"))
    return meta["domains"][args["domain"]]["train_docs"], meta["domains"][args["domain"]]["val_docs"]


measured(run)
"""


SELECT_CHILD = MEASURE + r"""
import types
import pyarrow.parquet as pq
from pipeline.config.pruning import PruningConfig
from pipeline.pruning import run as prune
from pipeline.store import DataRoot

root = DataRoot(Path(args["root"]))
spec = types.SimpleNamespace(pruning=PruningConfig(method="dbp", target_fraction=0.5), seed_for=lambda name: 5)
documents = sum(pq.ParquetFile(f).metadata.num_rows for f in root.data_files("curated", [args["domain"]]))


def run():
    drops, _report = prune._select(spec, root, [args["domain"]], None)
    return documents - drops.height, drops.height


measured(run)
"""


def _domain(folder: Path, documents: int) -> tuple[Path, Path]:
    """A data root with ``documents`` curated documents of one domain and the seeded half to drop (made once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.schema import DOCUMENT_SCHEMA

    root, gone = folder / "root", folder / "gone.npy"
    part = root / "curated" / f"domain={DOMAIN}" / "data" / "part-00000.parquet"
    if not part.exists():
        part.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(documents)
        words = rng.integers(0, 5000, size=(documents, 12)).tolist()
        text = [" ".join(f"w{w}" for w in row) for row in words]
        table = pa.table({"doc_id": [f"{i:032x}" for i in range(documents)], "domain": [DOMAIN] * documents,
                          "source": ["synthetic"] * documents, "source_file": ["synthetic.jsonl"] * documents,
                          "source_row": np.arange(documents), "text": text,
                          "n_bytes": [len(t) for t in text], "n_chars": [len(t) for t in text]}, schema=DOCUMENT_SCHEMA)
        pq.write_table(table, part, row_group_size=65_536)
        np.save(gone, np.sort(rng.choice(documents, size=documents // 2, replace=False)))
    _random_clusters(root, documents)
    return root, gone


def _random_clusters(root: Path, documents: int, k: int = 100) -> None:
    """Concept clusters for the selection, drawn at random (its memory is measured, not its quality); made here
    once, so that no child's setup differs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.store import DataRoot

    layout = DataRoot(root).layout
    if layout.cluster_assignments.exists():
        return
    rng = np.random.default_rng(k)
    layout.cluster_assignments.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"doc_id": [f"{i:032x}" for i in range(documents)], "domain": [DOMAIN] * documents,
                             "cluster": rng.integers(0, k, documents).astype(np.int32),
                             "distance": rng.random(documents).astype(np.float32)}), layout.cluster_assignments)
    centroids = rng.normal(size=(k, 16)).astype(np.float32)
    np.save(layout.cluster_centroids, centroids / np.linalg.norm(centroids, axis=1, keepdims=True))


STAGES = {"pruning_selection": SELECT_CHILD, "pruning_writer": PRUNE_CHILD, "token_bins": BINS_CHILD}


def measure(stage: str, code: Path, root: Path, gone: Path) -> dict:
    """``stage``'s child on the data root with the code under ``code``; its outputs are removed after."""
    from bench.bench_emission_memory import WORK as EMISSION_WORK, _tokenizer

    tokenizer = EMISSION_WORK / "tokenizer.json"
    if not tokenizer.exists():
        EMISSION_WORK.mkdir(parents=True, exist_ok=True)
        _tokenizer(tokenizer)
    leftovers = [root / "pruned", root / ".pruned.work", root / "bins", root / ".bins.work"]
    for leftover in leftovers:
        shutil.rmtree(leftover, ignore_errors=True)
    env = python_env()
    env["PYTHONPATH"] = str(code)
    args = {"root": str(root), "gone": str(gone), "domain": DOMAIN, "tokenizer": str(tokenizer),
            "out": str(root / "bins")}
    try:
        return run_measured([sys.executable, "-c", STAGES[stage], json.dumps(args)], env=env, cwd=code)
    finally:
        for leftover in leftovers:
            shutil.rmtree(leftover, ignore_errors=True)


def run(quick: bool, baseline: str | None = None) -> dict:
    base = QUICK_DOCUMENTS if quick else DOCUMENTS
    scales = (1, 4) if quick else (1, 4, 16)
    sides = {"current": REPO}
    if baseline:
        sides[f"baseline {baseline}"] = code_at(baseline, WORK)
    rows = []
    for scale in scales:
        root, gone = _domain(WORK / f"docs-{base * scale}", base * scale)
        for stage in STAGES:
            for side, code in sides.items():
                print(f"{stage}, {side}: {base * scale} documents", file=sys.stderr)
                rows.append({"stage": stage, "side": side, "scale": scale, "documents": base * scale,
                             **measure(stage, code, root, gone)})
    growth = {}
    top = max(scales)
    for stage in STAGES:
        for side in sides:
            mine = {r["scale"]: r for r in rows if r["side"] == side and r["stage"] == stage}
            growth[f"{stage}, {side}"] = {
                "documents": top, "wall": round(mine[top]["write_wall_s"] / mine[1]["write_wall_s"], 2),
                "own_memory": round(_own(mine[top]) / _own(mine[1]), 2)}
    return {"workload": {"domain_documents": [base * s for s in scales], "row_group_documents": 65_536,
                         "pruning_selection": "dbp to half, 100 clusters drawn at random",
                         "pruning": "half dropped, at seeded positions", "token_bins": "10% validation",
                         "engine": "inline"}, "rows": rows, "growth": growth}


def _own(row: dict) -> float:
    """What the stage added to the process's memory at its peak."""
    return row["write_peak_mib"] - row["rss_before_write_mib"]


def summarize(figures: dict) -> str:
    lines = ["| stage | code | documents | stage wall s | RSS before MiB | peak RSS MiB | peak - before MiB |",
             "|---|---|---|---|---|---|---|"]
    for r in figures["rows"]:
        lines.append(f"| {r['stage']} | {r['side']} | {r['documents']:,} | {r['write_wall_s']:.1f} | "
                     f"{r['rss_before_write_mib']:,.0f} | {r['write_peak_mib']:,.0f} | {_own(r):,.0f} |")
    for name, g in figures["growth"].items():
        lines.append(f"\n{name}: at {g['documents']}x the documents, wall {g['wall']}x, the stage's own memory "
                     f"(peak - before) {g['own_memory']}x")
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.run import main_with_baseline

    main_with_baseline("document_count", run, summarize, __doc__.splitlines()[0])
