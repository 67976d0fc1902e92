"""The pruning stage: curated documents -> ``pruned`` (kept documents + rejects + stats) per domain.

Reads the concept clusters (and embeddings for SemDeDup, proxy losses for SeTa), decides per
document with the spec's method (the global step: small per-document arrays), and writes
``<root>/pruned/domain=<d>/`` atomically through shard tasks (``PruningStage``): each copies the kept
documents of a run of curated row groups into a part with row groups bounded by bytes. Every pruned
document is in ``rejects.parquet`` with ``reason`` = the metric (semdedup, dbp, ssl_prototypes,
random, seta) and ``detail`` = its score. ``<root>/pruned/report.json`` and ``report.png`` hold the
per-cluster sizes, complexity and budgets. A disabled stage (or method "none") passes everything.

SemDeDup+DBP: the paper re-embeds and re-clusters the deduplicated set before DBP; we keep the one
clustering (the embeddings do not change, and the centroids move little when a few near-duplicates
go) and compute d_intra over the surviving members only. The DBP target is a fraction of the pool
*before* SemDeDup, as in the paper; when SemDeDup alone goes below it, DBP keeps everything left.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config.execution import ExecutionConfig
from pipeline.config.pruning import PruningConfig
from pipeline.engine import ShardTask, run_stage, shard_dir
from pipeline.engine.parts import ByteBoundedWriter, join_parquet, link_or_copy, parquet_row_group_runs
from pipeline.pruning import INPUT_STAGE, STAGE
from pipeline.pruning.clusters import StoredClusters, load_clusters
from pipeline.pruning import examples, methods
from pipeline.pruning.embed import load_embeddings
from pipeline.schema import REJECT_SCHEMA
from pipeline.spec import Spec
from pipeline.store import DataRoot, atomic_file, file_sha256, write_json


# Clusters shown with example documents in the report (and the asset's metadata).
EXAMPLE_CLUSTERS = 3


class PruningError(RuntimeError):
    """The stage cannot run with what is on disk; the message says what to materialize."""


@dataclass
class Decisions:
    """One row per document of the pool (in the clusters' order)."""

    keep: np.ndarray
    reason: np.ndarray        # object: metric name for dropped docs, None for kept
    detail: np.ndarray        # object: the metric's score as text
    duplicate_of: np.ndarray  # object: doc_id or None
    report: dict = field(default_factory=dict)


def _new_decisions(n: int) -> Decisions:
    return Decisions(keep=np.ones(n, dtype=bool), reason=np.full(n, None, dtype=object),
                     detail=np.full(n, None, dtype=object), duplicate_of=np.full(n, None, dtype=object))


def _drop(d: Decisions, idx: np.ndarray, reason: str, details: list[str]) -> None:
    d.keep[idx] = False
    d.reason[idx] = reason
    for i, text in zip(idx.tolist(), details):
        d.detail[i] = text


def _scope_groups(pool: StoredClusters, scope: str) -> list[tuple[str, np.ndarray]]:
    if scope == "global":
        return [("*", np.arange(len(pool)))]
    codes, names = pool.domains.codes()
    return [(name, np.flatnonzero(codes == code)) for code, name in enumerate(names)]


def read_losses(root: DataRoot, config: PruningConfig, pool: StoredClusters) -> np.ndarray:
    """Per-document proxy losses aligned to ``doc_ids``; a clear error when the scores are absent."""
    path = root.layout.difficulty_scores_file
    if not path.exists():
        raise PruningError(f"pruning.method 'seta' needs per-document losses at {path} (columns doc_id, domain, "
                           "loss), written by the difficulty_scores asset: materialize it first")
    scores = pl.read_parquet(path, columns=["doc_id", "domain", "loss"]).unique(["domain", "doc_id"], keep="first")
    if scores.height == 0:
        raise PruningError(f"{path} holds no scores (is the proxies stage disabled?); pruning.method 'seta' needs "
                           "per-document losses from a reference proxy")
    documents = pool.frame().with_row_index("row")
    joined = documents.join(scores, on=["domain", "doc_id"], how="left").sort("row")
    missing = joined["loss"].is_null()
    if missing.any():
        example = joined.filter(missing).row(0, named=True)
        raise PruningError(f"{path}: {int(missing.sum())} of {len(documents)} documents have no loss (e.g. doc_id "
                           f"{example['doc_id']} in domain {example['domain']}); re-materialize difficulty_scores")
    # A scored document with no token has a NaN loss: it gets its domain's median (neither easy nor hard).
    joined = joined.with_columns(pl.when(pl.col("loss").is_nan()).then(None).otherwise(pl.col("loss")).alias("loss"))
    joined = joined.with_columns(pl.col("loss").fill_null(pl.col("loss").median().over("domain")).fill_null(0.0))
    return joined["loss"].to_numpy().astype(np.float64)


def decide(config: PruningConfig, pool: StoredClusters, *, seed: int,
           embeddings: np.ndarray | None = None, losses: np.ndarray | None = None) -> Decisions:
    """Keep/drop for every document of ``pool`` with ``config.method`` (a registered method); pure given its inputs."""
    n = len(pool)
    d = _new_decisions(n)
    method = config.method
    report: dict = {"method": method, "target_fraction": config.target_fraction, "scope": config.scope,
                    "groups": []}
    if not config.active:
        d.report = report
        return d
    chain = methods.steps(method)
    required = methods.needs(method)
    if "embeddings" in required and embeddings is None:
        raise PruningError(f"{method} needs the embeddings")
    if "losses" in required and losses is None:
        raise PruningError(f"{method} needs per-document losses")

    def apply(c: methods.Candidates, step: methods.PruningMethod) -> methods.Selection:
        sel = step.select(c)
        gone = c.index[~sel.keep]
        _drop(d, gone, sel.reason, sel.details)
        if sel.duplicate_of is not None:
            d.duplicate_of[gone] = pool.doc_ids.take(sel.duplicate_of)
        return sel

    # Pool-wide steps (SemDeDup) first, then the per-group steps on what they left, as the chains are written.
    names = methods.CHAINS.get(method, (method,))
    for name, step in zip(names, chain):
        if step.scope == "pool":
            c = methods.Candidates(index=np.arange(n), target=int(round(config.target_fraction * n)), pool=pool,
                                   config=config, rng=np.random.default_rng(seed), seed=seed, embeddings=embeddings,
                                   losses=losses)
            report[name] = apply(c, step).report
    group_steps = [s for s in chain if s.scope == "group"]
    for gi, (name, members) in enumerate(_scope_groups(pool, config.scope)):
        target = int(round(config.target_fraction * len(members)))
        entry = {"group": name, "n_in": int(len(members)), "target": target, "alive": int(d.keep[members].sum())}
        for step in group_steps:
            c = methods.Candidates(index=members[d.keep[members]], target=target, pool=pool, config=config,
                                   rng=np.random.default_rng([seed, gi]), seed=seed, embeddings=embeddings,
                                   losses=losses)
            entry |= apply(c, step).report
        entry["kept"] = int(d.keep[members].sum())
        report["groups"].append(entry)
    for step in chain:
        step.finish(report, pool, config)
    if "clusters" not in report:
        report["clusters"] = methods.global_complexity(pool, config) | {
            "kept": np.bincount(pool.labels[d.keep], minlength=pool.centroids.shape[0]).tolist()}
    d.report = report
    return d


def _check_pool(root: DataRoot, pool: StoredClusters, domains: list[str]) -> None:
    """The clusters must describe exactly the current input documents, in their order: the writing shards find
    a pool position's document by its place in the input files (see ``PruningStage``)."""
    current = (pl.concat([root.scan(INPUT_STAGE, [dm]).select("doc_id", "domain").collect() for dm in domains])
               if domains else pl.DataFrame({"doc_id": [], "domain": []}, schema={"doc_id": pl.String, "domain": pl.String}))
    stored = pool.frame()
    if current.equals(stored):
        return
    missing = current.join(stored, on=["domain", "doc_id"], how="anti")
    extra = stored.join(current, on=["domain", "doc_id"], how="anti")
    what = (f"{len(missing)} {INPUT_STAGE} documents have no cluster and {len(extra)} clustered documents are gone"
            if len(missing) or len(extra) else f"they hold the {INPUT_STAGE} documents in another order")
    raise PruningError(f"concept_clusters are stale: {what}; re-materialize embeddings and concept_clusters")


def _examples(root: DataRoot, pool: StoredClusters, keep: np.ndarray, domains: list[str]) -> dict:
    """Example documents of a few clusters and kept fractions per domain, for the report (see examples.py)."""
    chosen = examples.pick_clusters(pool, keep, EXAMPLE_CLUSTERS)
    ids = sorted(examples.example_ids(pool, keep, chosen))
    texts = dict(pl.concat([root.scan(INPUT_STAGE, [dm]).select("doc_id", "text").filter(pl.col("doc_id").is_in(ids))
                            .collect() for dm in domains]).iter_rows())
    return {"cluster_examples": examples.cluster_examples(pool, keep, texts, chosen),
            "kept_fraction_by_domain": examples.kept_fraction_by_domain(pool.domains, keep)}


@dataclass
class PruneResult:
    rows_in: int
    rows_kept: int
    by_domain: dict
    report_path: Path | None
    seconds: float


DECISION_SCHEMA = pa.schema([("position", pa.int64()), ("doc_id", pa.string()), ("domain", pa.string()),
                             ("reason", pa.string()), ("detail", pa.string()), ("duplicate_of", pa.string())])
# Dropped documents per row group of the drops file: a shard reads the few row groups whose positions it covers.
DROPS_ROW_GROUP = 65_536
# Uncompressed curated bytes per writing shard.
SHARD_BYTES = 64 << 20


def _rejects(gone: pa.RecordBatch, decided: pa.Table, domain: str, excerpt_chars: int) -> pa.RecordBatch:
    """The reject rows of a batch's dropped documents, with the reasons the selection gave them."""
    n = gone.num_rows
    return pa.RecordBatch.from_arrays([
        pa.array([STAGE] * n, pa.string()), pa.array([domain] * n, pa.string()), gone.column("source"),
        gone.column("source_file"), gone.column("source_row"), gone.column("doc_id"),
        *(decided.column(c).combine_chunks() for c in ("reason", "detail", "duplicate_of")),
        pc.utf8_slice_codeunits(gone.column("text"), 0, excerpt_chars).cast(pa.string())], schema=REJECT_SCHEMA)


@dataclass(frozen=True)
class PruningStage:
    """Writing ``pruned/domain=*/`` on the stage contract, after the selection. ``decide`` (the global step, over
    small per-document arrays) has stored the dropped documents with their reasons in ``drops``, sorted by their
    position in the pool, which is the input documents' order (every input file of every domain, in order); a
    shard copies the kept documents of a run of row groups of one curated part into a part of its own, with row
    groups bounded by bytes, and writes its dropped ones as rejects, reading only the drops in its range of
    positions (so neither its memory nor its time grows with the domain's drops); ``finish`` assembles each
    domain atomically: the parts (hard links), one rejects file and stats.json."""

    root: DataRoot
    domains: tuple[str, ...]
    work_dir: Path
    drops: str
    drops_sha256: str
    method: str
    target_fraction: float
    excerpt_chars: int
    name: str = "pruned"
    version: str = "pruned-3"

    def plan(self) -> list[ShardTask]:
        tasks, position = [], 0  # the pool position of each run's first row
        for domain in self.domains:
            for i, f in enumerate(self.root.data_files(INPUT_STAGE, [domain])):
                meta = pq.ParquetFile(f).metadata
                for groups in parquet_row_group_runs(f, target_bytes=SHARD_BYTES):
                    rows = sum(meta.row_group(g).num_rows for g in groups)
                    tasks.append(ShardTask(key=f"{domain}-{i:05d}-{groups[0]:05d}", inputs=(str(f),), seed=0,
                                           settings={"domain": domain, "row_groups": groups, "first": position,
                                                     "rows": rows, "drops": self.drops_sha256,
                                                     "excerpt_chars": self.excerpt_chars}))
                    position += rows
        return tasks

    def _drops(self, first: int, rows: int) -> pa.Table:
        """The drops at pool positions ``first .. first + rows``, in order (row-group statistics skip the rest)."""
        return pq.read_table(self.drops, filters=[("position", ">=", first), ("position", "<", first + rows)])

    def run_shard(self, task: ShardTask, out: Path) -> dict:
        domain, position = task.settings["domain"], task.settings["first"]
        drops = self._drops(position, task.settings["rows"])
        drop_at = drops.column("position").to_numpy()
        source = pq.ParquetFile(task.inputs[0])
        reasons: Counter[str] = Counter()
        with ByteBoundedWriter(out / "part.parquet", source.schema_arrow) as writer, \
                ByteBoundedWriter(out / "rejects.parquet", REJECT_SCHEMA) as rejects:
            for batch in source.iter_batches(batch_size=1024, row_groups=task.settings["row_groups"]):
                lo, hi = np.searchsorted(drop_at, [position, position + batch.num_rows])
                here = drops.slice(lo, hi - lo)
                dropped = np.zeros(batch.num_rows, dtype=bool)
                dropped[drop_at[lo:hi] - position] = True
                position += batch.num_rows
                gone = batch.filter(pa.array(dropped))
                if gone.column("doc_id").to_pylist() != here.column("doc_id").to_pylist():
                    raise PruningError(f"{task.inputs[0]}: the curated documents changed while pruning ran; "
                                       "re-run pruned_documents")
                writer.write(batch.filter(pa.array(~dropped)))
                rejects.write(_rejects(gone, here, domain, task.settings["excerpt_chars"]))
                reasons.update(here.column("reason").to_pylist())
        return {"domain": domain, "rows_in": writer.rows + rejects.rows,
                "kept": writer.rows, "dropped": rejects.rows, "reasons": dict(reasons)}

    def finish(self, results: list[dict]) -> dict[str, dict]:
        shards = [shard_dir(self, t.key) for t in self.plan()]
        by_domain = {}
        for domain in self.domains:
            mine = [(s, r) for s, r in zip(shards, results) if r["domain"] == domain]
            reasons: Counter[str] = Counter()
            for _, r in mine:
                reasons.update(r["reasons"])
            with self.root.write_domain(STAGE, domain) as out:
                (out / "data").mkdir()
                for j, (shard, _) in enumerate(mine):
                    link_or_copy(shard / "part.parquet", out / "data" / f"part-{j:05d}.parquet")
                join_parquet([s / "rejects.parquet" for s, _ in mine], out / "rejects.parquet", REJECT_SCHEMA)
                stats = {"domain": domain, "method": self.method, "rows_in": sum(r["rows_in"] for _, r in mine),
                         "rows_kept": sum(r["kept"] for _, r in mine), "rows_dropped": sum(r["dropped"] for _, r in mine),
                         "rejects_by_reason": dict(sorted(reasons.items())), "target_fraction": self.target_fraction}
                write_json(out / "stats.json", stats)
            by_domain[domain] = stats
        return by_domain


def _select(spec: Spec, root: DataRoot, domains: list[str], progress: Callable[[str], None] | None
            ) -> tuple[pl.DataFrame | None, dict]:
    """The global step: which documents go and why (None: every document stays), and the report."""
    config: PruningConfig = spec.pruning
    if not config.active:
        return None, {"method": "none" if config.enabled else "disabled", "groups": []}
    pool = load_clusters(root)
    _check_pool(root, pool, domains)
    embeddings = None
    if "embeddings" in methods.needs(config.method):
        e_ids, e_domains, embeddings = load_embeddings(root)
        if pool.doc_ids != e_ids or pool.domains != e_domains:
            raise PruningError("embeddings and concept_clusters disagree on the documents: re-materialize "
                               "concept_clusters")
    losses = (read_losses(root, config, pool)
              if "losses" in methods.needs(config.method) else None)
    if progress:
        progress(f"pruning {len(pool)} documents with {config.method} to {config.target_fraction:.0%}")
    decisions = decide(config, pool, seed=spec.seed_for("pruning"), embeddings=embeddings, losses=losses)
    gone = ~decisions.keep
    drops = pool.frame().with_row_index("position").filter(pl.Series(gone)).with_columns(
        pl.col("position").cast(pl.Int64),
        reason=pl.Series(decisions.reason[gone].tolist(), dtype=pl.String),
        detail=pl.Series(decisions.detail[gone].tolist(), dtype=pl.String),
        duplicate_of=pl.Series(decisions.duplicate_of[gone].tolist(), dtype=pl.String))
    return drops, decisions.report | _examples(root, pool, decisions.keep, domains)


def _store_drops(drops: pl.DataFrame | None, work_dir: Path) -> tuple[str, str]:
    """The dropped documents as a file the shards read, sorted by position in row groups of ``DROPS_ROW_GROUP``;
    returns (path, sha256). The shards' fingerprints hold the sha256, so a re-run after a crash reuses the
    shards written from the same selection."""
    table = (drops.to_arrow() if drops is not None else DECISION_SCHEMA.empty_table()).cast(DECISION_SCHEMA)
    path = work_dir / "select" / "drops.parquet"
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=DROPS_ROW_GROUP)
    return str(path), file_sha256(path)


def prune_stage(spec: Spec, *, root: DataRoot | None = None, progress: Callable[[str], None] | None = None,
                execution: ExecutionConfig | None = None) -> PruneResult:
    """Run the pruning stage for every domain of the input stage: the selection once, then the writing shards."""
    started = time.perf_counter()
    root = root or DataRoot(spec.data_root)
    config: PruningConfig = spec.pruning
    domains = root.domains(INPUT_STAGE)
    if not domains:
        raise PruningError(f"no {INPUT_STAGE!r} documents under {root.root}: materialize curated_documents first")
    drops, report = _select(spec, root, domains, progress)
    work_dir = root.layout.work_dir(STAGE)
    path, sha = _store_drops(drops, work_dir)
    stage = PruningStage(root=root, domains=tuple(domains), work_dir=work_dir, drops=path, drops_sha256=sha,
                         method=report["method"], target_fraction=config.target_fraction if config.active else 1.0,
                         excerpt_chars=config.excerpt_chars)
    by_domain = run_stage(stage, execution=execution if execution is not None else spec.execution, progress=progress)
    if progress:
        for domain, s in by_domain.items():
            progress(f"pruned {domain}: kept {s['rows_kept']} of {s['rows_in']}")
    report["domains"] = by_domain
    report_path = write_report(root, report)
    rows_in = sum(s["rows_in"] for s in by_domain.values())
    rows_kept = sum(s["rows_kept"] for s in by_domain.values())
    return PruneResult(rows_in=rows_in, rows_kept=rows_kept, by_domain=by_domain, report_path=report_path,
                       seconds=time.perf_counter() - started)


def write_report(root: DataRoot, report: dict) -> Path:
    """``report.json`` and ``report.png`` (cluster sizes, complexity, budgets) under ``<root>/pruned``."""
    layout = root.layout
    layout.stage(STAGE).mkdir(parents=True, exist_ok=True)
    write_json(layout.pruning_report, report)
    if report.get("clusters"):
        _plot(report, layout.pruning_plot)
    return layout.pruning_report


def _plot(report: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = report["clusters"]
    sizes = np.array(c["sizes"], dtype=float)
    kept = np.array(c.get("budget") or c.get("kept") or [0] * len(sizes), dtype=float)
    cx = np.array([np.nan if v is None else v for v in c["complexity"]], dtype=float)
    order = np.argsort(-sizes)
    # The object API on an Agg canvas: no pyplot state, safe in a headless worker thread.
    fig = Figure(figsize=(15, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    axes[0].bar(np.arange(len(sizes)), sizes[order], color="#bbb", label="cluster size")
    axes[0].bar(np.arange(len(sizes)), kept[order], color="#1f77b4", label="kept (budget)")
    axes[0].set(xlabel="cluster (by size)", ylabel="documents", title="cluster sizes and budgets")
    axes[0].legend()
    frac = np.divide(kept, sizes, out=np.zeros_like(kept), where=sizes > 0)
    axes[1].scatter(cx, frac, s=np.clip(sizes / max(sizes.max(), 1) * 200, 5, 200), alpha=0.6)
    axes[1].set(xlabel="complexity d_intra x d_inter", ylabel="kept fraction", title="complexity vs kept fraction")
    names = list(report.get("domains", {}))
    rows_in = [report["domains"][n]["rows_in"] for n in names]
    rows_kept = [report["domains"][n]["rows_kept"] for n in names]
    axes[2].barh(names, rows_in, color="#bbb", label="in")
    axes[2].barh(names, rows_kept, color="#2ca02c", label="kept")
    axes[2].set(xlabel="documents", title=f"method {report['method']}")
    axes[2].legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})
