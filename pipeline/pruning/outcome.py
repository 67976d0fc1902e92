"""The pruning stages as the assets run them: spec in, ``StageOutcome`` out (metadata, data version, checks).

``assets/pruning.py`` only loads the spec, calls one of ``embeddings_outcome``, ``clusters_outcome``,
``pruned_outcome`` and yields ``materialize(outcome)``; every rule (skipping a disabled stage, the accounting and
budget checks, what the page shows) is here.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import polars as pl

from pipeline.content_version import stage_content_version
from pipeline.engine.outcome import CheckOutcome, Image, StageOutcome, Table
from pipeline.pruning import INPUT_STAGE, STAGE
from pipeline.pruning.clusters import assign_clusters
from pipeline.pruning.embed import embed_stage
from pipeline.pruning.run import PruneResult, prune_stage
from pipeline.spec import Spec
from pipeline.store import DataRoot, write_json

Progress = Callable[[str], None] | None
DISABLED = "pruning disabled (method none or enabled false)"


def embeddings_outcome(spec: Spec, *, progress: Progress = None, embedder=None) -> StageOutcome:
    """Embed the curated documents (``embedder``: one from proxies/ for kind "proxy", else None)."""
    root = DataRoot(spec.data_root)
    if not spec.pruning.active:
        root.layout.embeddings.mkdir(parents=True, exist_ok=True)
        write_json(root.layout.embeddings_meta, {"skipped": "pruning is disabled"})
        return StageOutcome(metadata={"skipped": DISABLED})
    info = embed_stage(root, spec.pruning.embedding, seed=spec.seed_for("embeddings"), input_stage=INPUT_STAGE,
                       progress=progress, embedder=embedder, execution=spec.execution)
    return StageOutcome(metadata={"documents": info.n_docs, "dim": info.dim, "embedder": info.kind,
                                  "docs_per_s": round(info.docs_per_s, 1), "path": info.path})


def clusters_outcome(spec: Spec, *, progress: Progress = None) -> StageOutcome:
    root = DataRoot(spec.data_root)
    if not spec.pruning.active:
        return StageOutcome(metadata={"skipped": DISABLED})
    summary = assign_clusters(root, spec.pruning.clusters, seed=spec.seed_for("concept_clusters"),
                              execution=spec.execution, progress=progress)
    sizes = sorted(summary["sizes"], reverse=True)
    return StageOutcome(metadata={
        "k": summary["k"], "documents": summary["n_docs"], "iterations": summary["iterations"],
        "fit_documents": summary["fit_docs"], "mean_cos_to_centroid": float(summary["mean_cos_to_centroid"]),
        "largest_clusters": sizes[:10], "smallest_clusters": sizes[-10:], "empty_clusters": summary["empty_clusters"],
        "path": root.layout.concept_clusters})


def accounting_check(root: DataRoot) -> CheckOutcome:
    """Per domain: curated rows = pruned rows kept + pruned rejects (re-counted from the files)."""
    problems, totals = [], {"in": 0, "kept": 0, "dropped": 0}
    for domain in root.domains(INPUT_STAGE):
        # Counted from the Parquet metadata where it can be: no column is read into memory.
        n_in = root.scan(INPUT_STAGE, [domain]).select(pl.len()).collect().item()
        n_kept = root.scan(STAGE, [domain]).select(pl.len()).collect().item()
        n_drop = root.scan_rejects(STAGE, [domain]).select(pl.len()).collect().item()
        totals["in"] += n_in
        totals["kept"] += n_kept
        totals["dropped"] += n_drop
        if n_in != n_kept + n_drop:
            problems.append(f"{domain}: {n_in} in != {n_kept} kept + {n_drop} dropped")
    return CheckOutcome("accounting", passed=not problems, metadata={
        "rows_in": totals["in"], "rows_kept": totals["kept"], "rows_dropped": totals["dropped"],
        "problems": "\n".join(problems) or "none"})


def budgets_check(report: dict) -> CheckOutcome:
    """DBP: per scope group the budgets sum to the target (or to what is left), within the caps, and
    exactly the budgeted number is kept in each cluster; other methods: kept == target."""
    problems = []
    for g in report.get("groups", []):
        if "budget_sum" in g:
            if g["budget_sum"] != g["budget_target"]:
                problems.append(f"{g['group']}: budgets sum {g['budget_sum']} != target {g['budget_target']}")
            if not g["budgets_within_caps"]:
                problems.append(f"{g['group']}: a budget exceeds its cluster's size")
            if not g["kept_equals_budgets"]:
                problems.append(f"{g['group']}: kept per cluster differs from the budgets")
        elif report.get("method") in ("ssl", "random", "seta") and g["kept"] != min(g["target"], g["alive"]):
            problems.append(f"{g['group']}: kept {g['kept']} != target {g['target']}")
    return CheckOutcome("budgets", passed=not problems, metadata={
        "groups": len(report.get("groups", [])), "problems": "\n".join(problems) or "none"})


def example_metadata(report: dict) -> dict:
    """Per-domain kept fractions and, for a few clusters, their most / least representative kept and dropped
    documents: what a concept cluster is, and what the method kept of it."""
    out: dict = {}
    if report.get("kept_fraction_by_domain"):
        out["kept_fraction_by_domain"] = report["kept_fraction_by_domain"]
    rows = [{"cluster": f"{e['cluster']} ({e['kept']}/{e['size']} kept)", "document": f"{side}, {label.replace('_', ' ')}",
             "domain": doc["domain"], "distance": doc["distance"], "excerpt": doc["excerpt"]}
            for e in report.get("cluster_examples", []) for side in ("kept", "dropped")
            for label in ("most_representative", "least_representative") for doc in e[f"{side}_{label}"]]
    if rows:
        out["cluster_examples"] = Table(rows)
    return out


def _largest_clusters(report: dict) -> list[dict]:
    clusters = report.get("clusters") or {}
    if not clusters:
        return []
    kept = clusters.get("budget") or clusters.get("kept") or []
    order = sorted(range(len(clusters["sizes"])), key=lambda j: -clusters["sizes"][j])[:20]
    return [{"cluster": j, "size": clusters["sizes"][j], "d_intra": clusters["d_intra"][j],
             "d_inter": clusters["d_inter"][j], "complexity": clusters["complexity"][j],
             "kept": kept[j] if kept else None} for j in order]


def pruned_outcome(spec: Spec, *, progress: Progress = None) -> StageOutcome:
    root = DataRoot(spec.data_root)
    result: PruneResult = prune_stage(spec, root=root, progress=progress)
    report = json.loads(result.report_path.read_text())
    rows = [{"domain": d, "in": s["rows_in"], "kept": s["rows_kept"], "dropped": s["rows_dropped"],
             "by_reason": json.dumps(s["rejects_by_reason"])} for d, s in result.by_domain.items()]
    metadata = {"method": report["method"], "rows_in": result.rows_in, "rows_kept": result.rows_kept,
                "kept_fraction": round(result.rows_kept / max(result.rows_in, 1), 4), "domains": Table(rows),
                "largest_clusters": Table(_largest_clusters(report)), "report": result.report_path}
    metadata |= example_metadata(report)
    if root.layout.pruning_plot.exists():
        metadata["plot"] = Image(root.layout.pruning_plot.read_bytes(), alt="pruning report")
    rejects = root.scan_rejects(STAGE).select("domain", "reason", "detail", "excerpt").head(10).collect()
    metadata["rejects_preview"] = Table(rejects.to_dicts())
    # What it wrote, not what it read: unchanged output leaves everything below fresh.
    return StageOutcome(metadata=metadata, data_version=stage_content_version(root, STAGE, spec.domains),
                        checks=[accounting_check(root), budgets_check(report)])
