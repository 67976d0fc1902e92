"""Pruning assets: `embeddings`, `concept_clusters`, `pruned_documents` (group "pruning").

Each body loads the spec, runs the stage (``pipeline.pruning.outcome``) and yields ``materialize(outcome)``; the
data lives under the data root (``embeddings/``, ``concept_clusters/``, ``pruned/domain=<d>/``).
"""

import dagster as dg

from assets.adapter import materialize
from assets.context import BuildContext, StageDefinitions
from assets.resources import CuramixResource
from pipeline.pruning.outcome import clusters_outcome, embeddings_outcome, pruned_outcome

GROUP = "pruning"


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
        code_version=ctx.code_version("pruning-embeddings-2", "pruning"),
    )
    def embeddings(context: dg.AssetExecutionContext, curamix: CuramixResource):
        spec = curamix.load_spec()
        embedder = proxy_embedder(spec) if spec.pruning.active else None
        yield from materialize(embeddings_outcome(spec, progress=context.log.info, embedder=embedder))

    @dg.asset(
        name="concept_clusters",
        deps=["embeddings"],
        group_name=GROUP,
        kinds={"parquet", "torch"},
        description="Spherical k-means over the embeddings (fitted on a bounded seeded sample): cluster and cosine "
        "distance to the centroid per document, normalized centroids, cluster sizes.",
        code_version=ctx.code_version("pruning-clusters-2", "pruning"),
    )
    def concept_clusters(context: dg.AssetExecutionContext, curamix: CuramixResource):
        yield from materialize(clusters_outcome(curamix.load_spec(), progress=context.log.info))

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
        code_version=ctx.code_version("pruning-2", "pruning"),
    )
    def pruned_documents(context: dg.AssetExecutionContext, curamix: CuramixResource):
        yield from materialize(pruned_outcome(curamix.load_spec(), progress=context.log.info))

    return StageDefinitions(assets=[embeddings, concept_clusters, pruned_documents])


__all__ = ["build_stage"]
