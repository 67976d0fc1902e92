"""Pruning assets: `embeddings`, `concept_clusters`, `pruned_documents` (group "pruning").

Thin wrappers over ``pipeline.pruning``; the data lives under the data root (``embeddings/``,
``concept_clusters/``, ``pruned/domain=<d>/``), and the metadata carries the report and its plot.
"""



import json

import dagster as dg

from assets.context import BuildContext, StageDefinitions, preview_markdown
from assets.ops_metadata import image_metadata
from assets.resources import CuramixResource
from pipeline.content_version import stage_content_version
from pipeline.pruning import INPUT_STAGE, STAGE
from pipeline.pruning.clusters import cluster_stage
from pipeline.pruning.embed import embed_stage
from pipeline.pruning.run import prune_stage
from pipeline.store import DataRoot, write_json

GROUP = "pruning"


def accounting_check(root: DataRoot) -> dg.AssetCheckResult:
    """Per domain: curated rows = pruned rows kept + pruned rejects (re-counted from the files)."""
    problems, totals = [], {"in": 0, "kept": 0, "dropped": 0}
    for domain in root.domains(INPUT_STAGE):
        n_in = root.scan(INPUT_STAGE, [domain]).select("doc_id").collect().height
        n_kept = root.scan(STAGE, [domain]).select("doc_id").collect().height
        n_drop = root.scan_rejects(STAGE, [domain]).select("doc_id").collect().height
        totals["in"] += n_in
        totals["kept"] += n_kept
        totals["dropped"] += n_drop
        if n_in != n_kept + n_drop:
            problems.append(f"{domain}: {n_in} in != {n_kept} kept + {n_drop} dropped")
    return dg.AssetCheckResult(
        check_name="accounting", passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rows_in": totals["in"], "rows_kept": totals["kept"], "rows_dropped": totals["dropped"],
                  "problems": "\n".join(problems) or "none"},
    )


def budgets_check(report: dict) -> dg.AssetCheckResult:
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
    return dg.AssetCheckResult(
        check_name="budgets", passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"groups": len(report.get("groups", [])), "problems": "\n".join(problems) or "none"},
    )


def example_metadata(report: dict) -> dict:
    """Per-domain kept fractions and, for a few clusters, their most / least representative kept and dropped
    documents: what a concept cluster is, and what the method kept of it."""
    out = {}
    if report.get("kept_fraction_by_domain"):
        out["kept_fraction_by_domain"] = dg.MetadataValue.json(report["kept_fraction_by_domain"])
    rows = [{"cluster": f"{e['cluster']} ({e['kept']}/{e['size']} kept)", "document": f"{side}, {label.replace('_', ' ')}",
             "domain": doc["domain"], "distance": doc["distance"], "excerpt": doc["excerpt"]}
            for e in report.get("cluster_examples", []) for side in ("kept", "dropped")
            for label in ("most_representative", "least_representative") for doc in e[f"{side}_{label}"]]
    if rows:
        out["cluster_examples"] = preview_markdown(rows, text_chars=160)
    return out


def proxy_embedder(spec):
    """kind "proxy": the D4-style embedder from proxies/ (pipeline/ does not import proxies); else None."""
    config = spec.pruning.embedding
    if config.kind != "proxy":
        return None
    from proxies.embedding import ProxyEmbedder

    return ProxyEmbedder(max_tokens=config.max_tokens, max_chars=config.max_chars, fit_steps=config.proxy_steps,
                         seed=spec.seed_for("embeddings"), batch_size=64)


def build_stage(ctx: BuildContext) -> StageDefinitions:
    @dg.asset(
        name="embeddings",
        deps=["curated_documents"],
        group_name=GROUP,
        kinds={"parquet", "scikitlearn"},
        description="One L2-normalized float32 vector per curated document (hashing -> TF-IDF -> truncated "
        "SVD by default, no download; all-MiniLM-L6-v2 offline, a proxy LM's mean hidden states (D4), or "
        "sentence-transformers from a local folder as options).",
        code_version=ctx.code_version("pruning-embeddings-1", "pruning"),
    )
    def embeddings(context: dg.AssetExecutionContext, curamix: CuramixResource):
        spec = curamix.load_spec()
        root = DataRoot(spec.data_root)
        if not spec.pruning.active:
            (root.root / "embeddings").mkdir(parents=True, exist_ok=True)
            write_json(root.root / "embeddings" / "meta.json", {"skipped": "pruning is disabled"})
            return dg.MaterializeResult(metadata={"skipped": "pruning disabled (method none or enabled false)"})
        info = embed_stage(root, spec.pruning.embedding, seed=spec.seed_for("embeddings"), input_stage=INPUT_STAGE,
                           progress=context.log.info, embedder=proxy_embedder(spec))
        return dg.MaterializeResult(metadata={
            "documents": info.n_docs, "dim": info.dim, "embedder": info.kind,
            "docs_per_s": dg.MetadataValue.float(round(info.docs_per_s, 1)),
            "path": dg.MetadataValue.path(str(info.path)),
        })

    @dg.asset(
        name="concept_clusters",
        deps=["embeddings"],
        group_name=GROUP,
        kinds={"parquet", "torch"},
        description="Spherical k-means over the embeddings: cluster and cosine distance to the centroid per "
        "document, normalized centroids, cluster sizes.",
        code_version=ctx.code_version("pruning-clusters-1", "pruning"),
    )
    def concept_clusters(context: dg.AssetExecutionContext, curamix: CuramixResource):
        spec = curamix.load_spec()
        root = DataRoot(spec.data_root)
        if not spec.pruning.active:
            return dg.MaterializeResult(metadata={"skipped": "pruning disabled (method none or enabled false)"})
        result, summary = cluster_stage(root, spec.pruning.clusters, seed=spec.seed_for("concept_clusters"))
        sizes = sorted(summary["sizes"], reverse=True)
        return dg.MaterializeResult(metadata={
            "k": summary["k"], "documents": summary["n_docs"], "iterations": summary["iterations"],
            "mean_cos_to_centroid": dg.MetadataValue.float(summary["mean_cos_to_centroid"]),
            "largest_clusters": dg.MetadataValue.json(sizes[:10]),
            "smallest_clusters": dg.MetadataValue.json(sizes[-10:]),
            "empty_clusters": summary["empty_clusters"],
            "path": dg.MetadataValue.path(str(root.root / "concept_clusters")),
        })

    @dg.asset(
        name="pruned_documents",
        deps=["concept_clusters", "difficulty_scores"],
        group_name=GROUP,
        kinds={"parquet", "numpy"},
        description="The curated pool pruned to the spec's target with its method (DBP, SemDeDup+DBP, "
        "SemDeDup, SSL prototypes, random or SeTa); every pruned document in rejects.parquet with the "
        "metric and its score; report.json and report.png with per-cluster sizes, complexity, budgets.",
        check_specs=[
            dg.AssetCheckSpec("accounting", asset="pruned_documents", blocking=True,
                              description="per domain: curated rows = kept + pruned (rejects)"),
            dg.AssetCheckSpec("budgets", asset="pruned_documents", blocking=True,
                              description="budgets sum to the target within caps; kept = budgets per cluster"),
        ],
        code_version=ctx.code_version("pruning-1", "pruning"),
    )
    def pruned_documents(context: dg.AssetExecutionContext, curamix: CuramixResource):
        spec = curamix.load_spec()
        root = DataRoot(spec.data_root)
        result = prune_stage(spec, root=root, progress=context.log.info)
        report = json.loads(result.report_path.read_text())
        rows = [{"domain": d, "in": s["rows_in"], "kept": s["rows_kept"], "dropped": s["rows_dropped"],
                 "by_reason": json.dumps(s["rejects_by_reason"])} for d, s in result.by_domain.items()]
        clusters = report.get("clusters") or {}
        cluster_rows = []
        if clusters:
            kept = clusters.get("budget") or clusters.get("kept") or []
            order = sorted(range(len(clusters["sizes"])), key=lambda j: -clusters["sizes"][j])[:20]
            cluster_rows = [{"cluster": j, "size": clusters["sizes"][j], "d_intra": clusters["d_intra"][j],
                             "d_inter": clusters["d_inter"][j], "complexity": clusters["complexity"][j],
                             "kept": kept[j] if kept else None} for j in order]
        metadata = {
            "method": report["method"],
            "rows_in": result.rows_in,
            "rows_kept": result.rows_kept,
            "kept_fraction": dg.MetadataValue.float(round(result.rows_kept / max(result.rows_in, 1), 4)),
            "domains": preview_markdown(rows, text_chars=120),
            "largest_clusters": preview_markdown(cluster_rows),
            "report": dg.MetadataValue.path(str(result.report_path)),
        }
        metadata |= example_metadata(report)
        png = result.report_path.with_name("report.png")
        if png.exists():
            metadata["plot"] = image_metadata(png, alt="pruning report")
        rejects = root.scan_rejects(STAGE).select("domain", "reason", "detail", "excerpt").head(10).collect()
        metadata["rejects_preview"] = preview_markdown(rejects.to_dicts())
        # What it wrote, not what it read: unchanged output leaves everything below fresh.
        yield dg.MaterializeResult(metadata=metadata,
                                   data_version=dg.DataVersion(stage_content_version(root, STAGE, spec.domains)))
        yield accounting_check(root)
        yield budgets_check(report)

    return StageDefinitions(assets=[embeddings, concept_clusters, pruned_documents])


__all__ = ["build_stage", "accounting_check", "budgets_check"]
