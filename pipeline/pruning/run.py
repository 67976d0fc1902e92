"""The pruning stage: curated documents -> ``pruned`` (kept documents + rejects + stats) per domain.

Reads the concept clusters (and embeddings for SemDeDup, proxy losses for SeTa), decides per
document with the spec's method, and writes ``<root>/pruned/domain=<d>/`` atomically. Every pruned
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
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pipeline.config.pruning import PruningConfig
from pipeline.pruning import INPUT_STAGE, STAGE
from pipeline.pruning.clusters import StoredClusters, load_clusters
from pipeline.pruning import examples, methods
from pipeline.pruning.embed import load_embeddings
from pipeline.schema import REJECT_SCHEMA
from pipeline.spec import Spec
from pipeline.store import DataRoot, atomic_file, write_json


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


def _scope_groups(domains: np.ndarray, scope: str) -> list[tuple[str, np.ndarray]]:
    if scope == "global":
        return [("*", np.arange(len(domains)))]
    return [(str(g), np.flatnonzero(domains == g)) for g in sorted(set(domains.tolist()))]


def read_losses(root: DataRoot, config: PruningConfig, doc_ids: list[str], domains: list[str]) -> np.ndarray:
    """Per-document proxy losses aligned to ``doc_ids``; a clear error when the scores are absent."""
    path = root.root / config.seta.scores
    if not path.exists():
        raise PruningError(f"pruning.method 'seta' needs per-document losses at {path} (columns doc_id, domain, "
                           "loss), written by the difficulty_scores asset: materialize it first")
    scores = pl.read_parquet(path, columns=["doc_id", "domain", "loss"]).unique(["domain", "doc_id"], keep="first")
    if scores.height == 0:
        raise PruningError(f"{path} holds no scores (is the proxies stage disabled?); pruning.method 'seta' needs "
                           "per-document losses from a reference proxy")
    pool = pl.DataFrame({"doc_id": doc_ids, "domain": domains}).with_row_index("row")
    joined = pool.join(scores, on=["domain", "doc_id"], how="left").sort("row")
    missing = joined["loss"].is_null()
    if missing.any():
        example = joined.filter(missing).row(0, named=True)
        raise PruningError(f"{path}: {int(missing.sum())} of {len(pool)} documents have no loss (e.g. doc_id "
                           f"{example['doc_id']} in domain {example['domain']}); re-materialize difficulty_scores")
    # A scored document with no token has a NaN loss: it gets its domain's median (neither easy nor hard).
    joined = joined.with_columns(pl.when(pl.col("loss").is_nan()).then(None).otherwise(pl.col("loss")).alias("loss"))
    joined = joined.with_columns(pl.col("loss").fill_null(pl.col("loss").median().over("domain")).fill_null(0.0))
    return joined["loss"].to_numpy().astype(np.float64)


def decide(config: PruningConfig, pool: StoredClusters, *, seed: int,
           embeddings: np.ndarray | None = None, losses: np.ndarray | None = None) -> Decisions:
    """Keep/drop for every document of ``pool`` with ``config.method`` (a registered method); pure given its inputs."""
    n = len(pool.doc_ids)
    d = _new_decisions(n)
    method = config.method
    domains = np.array(pool.domains, dtype=object)
    ids = np.array(pool.doc_ids, dtype=object)
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
            d.duplicate_of[gone] = ids[sel.duplicate_of]
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
    for gi, (name, members) in enumerate(_scope_groups(domains, config.scope)):
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
    """The clusters must describe exactly the current input documents."""
    current = (pl.concat([root.scan(INPUT_STAGE, [dm]).select("doc_id", "domain").collect() for dm in domains])
               if domains else pl.DataFrame({"doc_id": [], "domain": []}, schema={"doc_id": pl.String, "domain": pl.String}))
    stored = pl.DataFrame({"doc_id": pool.doc_ids, "domain": pool.domains})
    missing = current.join(stored, on=["domain", "doc_id"], how="anti")
    extra = stored.join(current, on=["domain", "doc_id"], how="anti")
    if len(missing) or len(extra):
        raise PruningError(f"concept_clusters are stale: {len(missing)} {INPUT_STAGE} documents have no cluster and "
                           f"{len(extra)} clustered documents are gone; re-materialize embeddings and concept_clusters")


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


def prune_stage(spec: Spec, *, root: DataRoot | None = None,
                progress: Callable[[str], None] | None = None) -> PruneResult:
    """Run the pruning stage for every domain of the input stage."""
    started = time.perf_counter()
    root = root or DataRoot(spec.data_root)
    config: PruningConfig = spec.pruning
    domains = root.domains(INPUT_STAGE)
    if not domains:
        raise PruningError(f"no {INPUT_STAGE!r} documents under {root.root}: materialize curated_documents first")
    seed = spec.seed_for("pruning")
    if config.active:
        pool = load_clusters(root)
        _check_pool(root, pool, domains)
        embeddings = None
        if "embeddings" in methods.needs(config.method):
            e_ids, e_domains, embeddings = load_embeddings(root)
            if e_ids != pool.doc_ids or e_domains != pool.domains:
                raise PruningError("embeddings and concept_clusters disagree on the documents: re-materialize "
                                   "concept_clusters")
        losses = (read_losses(root, config, pool.doc_ids, pool.domains)
                  if "losses" in methods.needs(config.method) else None)
        if progress:
            progress(f"pruning {len(pool.doc_ids)} documents with {config.method} to {config.target_fraction:.0%}")
        decisions = decide(config, pool, seed=seed, embeddings=embeddings, losses=losses)
        table = pl.DataFrame({
            "doc_id": pool.doc_ids, "domain": pool.domains, "keep": decisions.keep,
            "reason": decisions.reason.tolist(), "detail": decisions.detail.tolist(),
            "duplicate_of": decisions.duplicate_of.tolist()},
            schema={"doc_id": pl.String, "domain": pl.String, "keep": pl.Boolean, "reason": pl.String,
                    "detail": pl.String, "duplicate_of": pl.String})
        report = decisions.report | _examples(root, pool, decisions.keep, domains)
    else:
        table = None
        report = {"method": "none" if config.enabled else "disabled", "groups": []}
    by_domain = {}
    for domain in domains:
        dom = table.filter(pl.col("domain") == domain) if table is not None else None
        by_domain[domain] = _write_domain(root, domain, dom, config, report["method"])
        if progress:
            s = by_domain[domain]
            progress(f"pruned {domain}: kept {s['rows_kept']} of {s['rows_in']}")
    report["domains"] = by_domain
    report_path = write_report(root, report)
    rows_in = sum(s["rows_in"] for s in by_domain.values())
    rows_kept = sum(s["rows_kept"] for s in by_domain.values())
    return PruneResult(rows_in=rows_in, rows_kept=rows_kept, by_domain=by_domain, report_path=report_path,
                       seconds=time.perf_counter() - started)


def _write_domain(root: DataRoot, domain: str, decisions: pl.DataFrame | None, config: PruningConfig,
                  method: str) -> dict:
    files = root.data_files(INPUT_STAGE, [domain])
    dataset = pads.dataset([str(f) for f in files], format="parquet")
    drop = decisions.filter(~pl.col("keep")) if decisions is not None else None
    drop_ids = pa.array(drop["doc_id"].to_list() if drop is not None else [], pa.string())
    reasons: Counter[str] = Counter()
    rows_in = dataset.count_rows()
    with root.write_domain(STAGE, domain) as out:
        (out / "data").mkdir()
        kept = 0
        keep_filter = ~pc.field("doc_id").isin(drop_ids)
        with pq.ParquetWriter(out / "data" / "part-00000.parquet", dataset.schema, compression="zstd") as writer:
            for batch in dataset.to_batches(filter=keep_filter, batch_size=8192):
                if batch.num_rows:
                    writer.write_batch(batch)
                    kept += batch.num_rows
        rows = []
        if drop is not None and len(drop):
            info = {r["doc_id"]: r for r in drop.iter_rows(named=True)}
            columns = ["doc_id", "source", "source_file", "source_row", "text"]
            for batch in dataset.to_batches(columns=columns, filter=pc.field("doc_id").isin(drop_ids), batch_size=8192):
                for doc_id, source, source_file, source_row, text in zip(*(batch.column(c).to_pylist() for c in columns)):
                    r = info[doc_id]
                    reasons[r["reason"]] += 1
                    rows.append({"stage": STAGE, "domain": domain, "source": source, "source_file": source_file,
                                 "source_row": source_row, "doc_id": doc_id, "reason": r["reason"],
                                 "detail": r["detail"], "duplicate_of": r["duplicate_of"],
                                 "excerpt": text[: config.excerpt_chars]})
        pq.write_table(pa.Table.from_pylist(rows, schema=REJECT_SCHEMA), out / "rejects.parquet", compression="zstd")
        stats = {"domain": domain, "method": method, "rows_in": rows_in, "rows_kept": kept,
                 "rows_dropped": len(rows), "rejects_by_reason": dict(sorted(reasons.items())),
                 "target_fraction": config.target_fraction if config.active else 1.0}
        write_json(out / "stats.json", stats)
    return stats


def write_report(root: DataRoot, report: dict) -> Path:
    """``report.json`` and ``report.png`` (cluster sizes, complexity, budgets) under ``<root>/pruned``."""
    base = root.stage_dir(STAGE)
    base.mkdir(parents=True, exist_ok=True)
    write_json(base / "report.json", report)
    clusters = report.get("clusters")
    png = base / "report.png"
    if clusters:
        _plot(report, png)
    return base / "report.json"


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
