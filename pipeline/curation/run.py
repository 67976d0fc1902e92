"""The curation stage: staged ``documents`` -> ``curated`` documents, every drop recorded.

On the stage contract (``pipeline.engine``), in two sharded passes with a global step between them,
so that it runs under every engine (inline, local workers, Ray) with the same bytes:

1. ``keys`` (a shard per run of staged row groups, ``shards``): per document, its exact-dedup key, its
   quality-filter verdict (the domain's filters) and, where it passes in a domain that takes part, its
   MinHash signature and LSH band keys;
2. global (``dedup``, DuckDB on disk): exact duplicates keep the first in the priority order; band keys
   -> candidate pairs -> verified -> union-find clusters; every document to drop, with its reason;
3. ``write`` (the same runs): the kept documents and the rejects of each run; then each domain's
   ``curated/domain=<d>/`` (parts, ``rejects.parquet``, ``stats.json``), written atomically.

Per domain, ``rows_in = rows_kept + rows_dropped`` holds by construction and is re-checked by the
asset check. Order of the rules: exact duplicates first (cheapest), then filters, then near
duplicates among the documents the filters kept, so that a low-quality copy never becomes the
survivor that stands for a cluster (as in FineWeb and RefinedWeb, which filter before fuzzy dedup).
A run killed in a pass resumes from its finished shards (and from the global step's result).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from pipeline.config.curation import CurationConfig
from pipeline.config.execution import ExecutionConfig
from pipeline.curation.dedup import NEAR_DUPLICATE, finished_dedup
from pipeline.curation.keys import KeysStage, Seeds
from pipeline.curation.report import DomainReport
from pipeline.curation.shards import iter_text_batches, plan_runs
from pipeline.curation.write import REJECT_STAGE, STAGE, WriteStage
from pipeline.engine import run_stage
from pipeline.schema import REJECT_SCHEMA
from pipeline.spec import Spec
from pipeline.store import DataRoot, write_json

log = logging.getLogger(__name__)

__all__ = ["STAGE", "REJECT_STAGE", "NEAR_DUPLICATE", "DomainReport", "Seeds", "curate", "check_accounting",
           "iter_text_batches"]


def minhash_seed(spec: Spec) -> int:
    return spec.seed_for("curation.minhash") & 0x7FFF_FFFF_FFFF


def curate(
    spec: Spec,
    *,
    config: CurationConfig | None = None,
    root: DataRoot | None = None,
    progress: Callable[[str], None] | None = None,
    execution: ExecutionConfig | None = None,
) -> dict[str, DomainReport]:
    """Run the whole stage for every domain of ``spec``; returns a report per domain."""
    config = config or spec.curation
    root = root or DataRoot(spec.data_root)
    say = progress or log.info
    domains = spec.domains
    missing = [d for d in domains if not root.domain_dir("documents", d).exists()]
    if missing:
        raise FileNotFoundError(f"no staged documents for domain(s) {', '.join(missing)}: materialize `documents` first")
    if not config.enabled:
        return {d: _pass_through(root, d, root.data_files("documents", [d]), config) for d in domains}
    reports = _curate(spec, config, root, execution or spec.execution, say)
    for report in reports.values():
        if report.guard:
            log.warning(report.guard["message"])
            say(f"WARNING: {report.guard['message']}")
    return reports


def _curate(spec: Spec, config: CurationConfig, root: DataRoot, execution: ExecutionConfig,
            say: Callable[[str], None]) -> dict[str, DomainReport]:
    rank = {s.name: i for i, s in enumerate(spec.sources)}
    runs = plan_runs(root, spec.domains, rank)
    keys = KeysStage(root=root, runs=runs, source_rank=rank, config=config, seed=minhash_seed(spec))
    say(f"curation: keys, filters and signatures of {sum(r.rows for r in runs)} documents in {len(runs)} shard(s)")
    summary = finished_dedup(keys.dedup_dir, keys.fingerprint())
    if summary is None:
        summary = run_stage(keys, execution=execution, progress=say)
    else:
        say("curation: reusing the finished global dedup step")
    say(f"curation: {summary.unique} unique of {summary.documents} documents; "
        f"near-duplicates: {summary.near_duplicates} dropped")
    write = WriteStage(root=root, domains=list(spec.domains), runs=runs, drops=keys.dedup_dir / "drops.parquet",
                       config=config)
    reports = run_stage(write, execution=execution, progress=say)
    shutil.rmtree(keys.dedup_dir, ignore_errors=True)
    for domain, report in reports.items():
        say(f"curation: {domain} (profile {report.profile}): kept {report.rows_kept} of {report.rows_in}, "
            f"dropped {report.drops}")
    return reports


def _pass_through(root: DataRoot, domain: str, files: list[Path], config: CurationConfig) -> DomainReport:
    """A disabled stage still writes its output: every document kept, no rejects."""
    report = DomainReport(domain=domain, profile="disabled")
    with root.write_domain(STAGE, domain) as out:
        (out / "data").mkdir()
        for i, f in enumerate(files):
            shutil.copyfile(f, out / "data" / f"part-{i:05d}.parquet")
        pq.write_table(REJECT_SCHEMA.empty_table(), out / "rejects.parquet")
        if files:
            counts = pl.scan_parquet(files).select(pl.len(), pl.col("n_bytes").sum()).collect().row(0)
            report.rows_in = report.rows_kept = int(counts[0])
            report.bytes_in = report.bytes_kept = int(counts[1] or 0)
        write_json(out / "stats.json", {**report.to_dict(), "config": {"enabled": False}})
    return report


def check_accounting(root: DataRoot, domains: list[str]) -> dict[str, dict]:
    """Re-count from the files: rows staged = rows kept + rows rejected, per domain."""
    out = {}
    for domain in domains:
        rows_in = root.scan("documents", [domain]).select(pl.len()).collect().item()
        kept = root.scan(STAGE, [domain]).select(pl.len()).collect().item()
        dropped = root.scan_rejects(STAGE, [domain]).select(pl.len()).collect().item()
        stats = root.read_stats(STAGE, domain)
        ok = rows_in == kept + dropped and stats["rows_in"] == rows_in and stats["rows_kept"] == kept \
            and stats["rows_dropped"] == dropped
        out[domain] = {"rows_in": rows_in, "kept": kept, "dropped": dropped, "ok": ok}
    return out
