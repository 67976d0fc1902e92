"""Proxy assets: `tokenizer`, `reference_proxy`, `difficulty_scores`, `token_bins`, `proxy_runs` (every sweep).

Each body loads the spec, runs its stage (``proxies/``: tokenizer_stage.py, reference.py, scoring.py, bins.py,
runs.py) and hands the outcome to ``assets.adapter.materialize``. Outputs under the data root (``Layout`` names;
all written to a temporary name, then renamed):
  tokenizer/tokenizer.json, tokenizer/meta.json                 (sha256, vocab size, where it came from)
  tokenizer/{tokenizer_config,special_tokens_map,tokenizer_metadata}.json   EOS for transformers / Megatron
  reference_proxy/bins/..., reference_proxy/{model.safetensors, proxy.json, results.parquet}
  difficulty_scores/scores.parquet                               doc_id, domain, loss, n_tokens
  token_bins/...                                                 see proxies/bins.py
  proxy_runs/<sweep>/{results.parquet, meta.json}                see proxies/population.py for the columns
"""

import dagster as dg

from assets.adapter import materialize
from assets.context import BuildContext, StageDefinitions
from assets.resources import CuramixResource
from mixers.regmix.sampling import sample_sweep_mixtures
from proxies.bins import build_token_bins
from proxies.reference import train_reference_proxy
from proxies.runs import run_proxy_sweeps
from proxies.scoring import difficulty_scores_outcome, scores_read_by
from proxies.tokenizer_stage import build_tokenizer


def build_stage(ctx: BuildContext) -> StageDefinitions:
    @dg.asset(
        name="tokenizer", deps=["curated_documents"], group_name="proxies", kinds={"tokenizers"},
        description="Byte-level BPE trained offline on the curated pool (or the user's tokenizer.json), with sha256.",
        check_specs=[dg.AssetCheckSpec("roundtrip", asset="tokenizer", blocking=True,
                                       description="curated documents decode back to themselves exactly")],
        code_version=ctx.code_version("tokenizer-2", "tokenizer"),
    )
    def tokenizer(context: dg.AssetExecutionContext, curamix: CuramixResource):
        yield from materialize(build_tokenizer(curamix.load_spec(), progress=context.log.info))

    # Both read the curated documents (the proxy trains on them, the scores cover them) and are read only
    # by SeTa pruning: unless it is configured they are skipped cheaply (and re-run when it is).
    read_by = scores_read_by(ctx.spec)
    skipped = "" if read_by else "-skipped"

    @dg.asset(
        name="reference_proxy", deps=["tokenizer", "curated_documents"], group_name="proxies",
        kinds={"pytorch", "safetensors"},
        description="One proxy trained on the natural mixture (token shares) of the curated pool; scores documents. "
        "Skipped unless a configured step reads the difficulty scores (pruning.method seta).",
        code_version=ctx.code_version(f"reference-proxy-1{skipped}", "proxies"),
    )
    def reference_proxy(context: dg.AssetExecutionContext, curamix: CuramixResource):
        yield from materialize(train_reference_proxy(curamix.load_spec(), progress=context.log.info))

    @dg.asset(
        name="difficulty_scores", deps=["reference_proxy", "tokenizer", "curated_documents"], group_name="proxies",
        kinds={"parquet", "pytorch"},
        description="Mean token loss of every curated document under the reference proxy (SeTa's difficulty score). "
        "Skipped (an empty table) unless a configured step reads it (pruning.method seta).",
        code_version=ctx.code_version(f"difficulty-scores-2{skipped}", "proxies"),
    )
    def difficulty_scores(context: dg.AssetExecutionContext, curamix: CuramixResource):
        yield from materialize(difficulty_scores_outcome(curamix.load_spec(), progress=context.log.info))

    @dg.asset(
        name="token_bins", deps=["pruned_documents", "tokenizer"], group_name="proxies", kinds={"numpy"},
        description="Per-domain train/validation token arrays of the pruned pool (split by document), plus target "
        "sets.",
        check_specs=[dg.AssetCheckSpec("split_and_sizes", asset="token_bins", blocking=True,
                                       description="no document in both splits; token counts match the files")],
        code_version=ctx.code_version("token-bins-1", "proxies"),
    )
    def token_bins(context: dg.AssetExecutionContext, curamix: CuramixResource):
        yield from materialize(build_token_bins(curamix.load_spec(), progress=context.log.info))

    @dg.asset(
        name="proxy_runs", deps=["token_bins"], group_name="proxies",
        kinds={"pytorch", "parquet"},
        description="Every sweep of the spec: candidate mixtures, each trained as a proxy (a batched population); "
        "results table mixture -> per-domain and per-target validation losses at "
        "<root>/proxy_runs/<sweep>/results.parquet. A sweep whose inputs are unchanged is not retrained.",
        check_specs=[dg.AssetCheckSpec("finite_losses", asset="proxy_runs", blocking=True,
                                       description="every member's final validation losses are finite")],
        code_version=ctx.code_version("proxy-runs-2", "proxies"),
    )
    def proxy_runs(context: dg.AssetExecutionContext, curamix: CuramixResource):
        # One asset, sweeps as units inside it (each cached by a fingerprint of its inputs), rather than
        # a dynamic partition per sweep: Dagster's "Materialize all" backfill cannot reach partitions of
        # an asset that sits below unpartitioned ones (token_bins), so the graph would stop here.
        outcome = run_proxy_sweeps(curamix.load_spec(), sampler=sample_sweep_mixtures, progress=context.log.info)
        yield from materialize(outcome)

    return StageDefinitions(assets=[tokenizer, reference_proxy, difficulty_scores, token_bins, proxy_runs])


__all__ = ["build_stage"]
