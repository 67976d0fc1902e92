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

from pathlib import Path

import dagster as dg
import polars as pl

from assets.adapter import materialize
from assets.context import BuildContext, StageDefinitions, preview_markdown
from assets.resources import CuramixResource
from mixers.regmix.sampling import sample_sweep_mixtures
from pipeline.store import DataRoot, atomic_file
from proxies.bins import build_token_bins
from proxies.population import pick_device
from proxies.reference import scores_read_by as _scores_read_by
from proxies.reference import skipped_outcome, train_reference_proxy
from proxies.runs import run_proxy_sweeps
from proxies.scoring import ScoreBudget, score_stage
from proxies.sweep import load_proxy
from proxies.tokenizer import eot_id, load_tokenizer
from proxies.tokenizer_stage import build_tokenizer

SCORE_COLUMNS = {"doc_id": pl.String, "domain": pl.String, "loss": pl.Float64, "n_tokens": pl.Int64}


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    with atomic_file(path) as tmp:
        frame.write_parquet(tmp)


def _skip(out: Path, context, *, empty_scores: bool = False) -> dg.MaterializeResult:
    """Materialize a skipped asset cheaply: a note saying why, no model, an empty scores table."""
    write = (lambda tmp: pl.DataFrame(schema=SCORE_COLUMNS).write_parquet(tmp / "scores.parquet")) if empty_scores else None
    outcome = skipped_outcome(out, write=write)
    context.log.info(f"skipped: {outcome.metadata['skipped']}")
    return next(materialize(outcome))


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
    read_by = _scores_read_by(ctx.spec)
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
        spec = curamix.load_spec()
        root = DataRoot(spec.data_root)
        out = root.root / "difficulty_scores"
        if not _scores_read_by(spec):
            return _skip(out, context, empty_scores=True)
        out.mkdir(parents=True, exist_ok=True)
        cfg = spec.proxies
        if cfg.enabled:
            model, _ = load_proxy(root.root / "reference_proxy")
            tok = load_tokenizer(root.root / "tokenizer" / "tokenizer.json")
            budget = ScoreBudget.of(cfg.score_tokens, cfg.score_mode, spec.seed_for("difficulty_scores"))
            summary = score_stage(root, "curated", spec.domains, model=model, tokenizer=tok, bos=eot_id(tok),
                                  out=out / "scores.parquet", budget=budget, batch_tokens=cfg.score_batch_tokens,
                                  device=pick_device(cfg.train.device), precision=cfg.train.precision,
                                  progress=context.log.info)
        else:  # pass-through: no scores, SeTa keeps everything
            _write_parquet(pl.DataFrame(schema=SCORE_COLUMNS), out / "scores.parquet")
            summary = {}
        rows = [{"domain": d, **v} for d, v in sorted(summary.items())]
        return dg.MaterializeResult(metadata={"documents": sum(v["docs"] for v in summary.values()),
                                              "score_tokens": str(cfg.score_tokens), "score_mode": cfg.score_mode,
                                              "by_domain": preview_markdown(rows),
                                              "path": dg.MetadataValue.path(str(out / "scores.parquet"))})

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
