"""Proxy assets: `tokenizer`, `reference_proxy`, `difficulty_scores`, `token_bins`, `proxy_runs` (every sweep).

Outputs under the data root (all written to a temporary name, then renamed):
  tokenizer/tokenizer.json, tokenizer/meta.json                 (sha256, vocab size, where it came from)
  tokenizer/{tokenizer_config,special_tokens_map,tokenizer_metadata}.json   EOS for transformers / Megatron
  reference_proxy/bins/..., reference_proxy/{model.safetensors, proxy.json, results.parquet}
  difficulty_scores/scores.parquet                               doc_id, domain, loss, n_tokens
  token_bins/...                                                 see proxies/bins.py
  proxy_runs/<sweep>/{results.parquet, meta.json}                see proxies/population.py for the columns
"""

import hashlib
import json
import shutil
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from assets.adapter import check_result, materialize
from assets.context import BuildContext, StageDefinitions, preview_markdown
from assets.ops_metadata import image_metadata
from pipeline import plots
from assets.resources import CuramixResource
from pipeline.config.typed import to_plain
from pipeline.store import DataRoot, atomic_file, replace_dir, temp_name, write_json
from proxies.bins import Bins, bins_outcome, build_bins, check_split_and_sizes, read_target_texts
from proxies.population import pick_device, train_population
from proxies.scoring import difficulty_scores_outcome, scores_read_by
from mixers.regmix.sampling import sample_sweep_mixtures
from proxies.sweep import load_proxy, save_proxy
from pipeline.emission.writer import find_eos
from proxies.tokenizer import (eot_id, file_sha256, load_tokenizer, sample_training_texts, save_tokenizer,
                               train_tokenizer, write_loader_files)

SCORE_COLUMNS = {"doc_id": pl.String, "domain": pl.String, "loss": pl.Float64, "n_tokens": pl.Int64}


def _tmp_dir(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    tmp.mkdir()
    return tmp


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    with atomic_file(path) as tmp:
        frame.write_parquet(tmp)


def _sweep_fingerprint(spec, bins: Bins, sweep) -> str:
    """What a sweep's results depend on: its own settings, the training settings, the data, the seed."""
    cfg = to_plain(spec.proxies)
    cfg.pop("sweeps", None)
    for key in ("score_tokens", "score_mode", "score_batch_tokens"):  # difficulty scoring only, not sweeps
        cfg.pop(key, None)
    inputs = {"sweep": to_plain(sweep), "proxies": cfg, "bins": bins.meta, "seed": spec.seed_for(f"proxy_runs/{sweep.name}")}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _run_sweep(context, spec, bins: Bins, sweep, final_dir: Path) -> tuple[pl.DataFrame, dict]:
    """Train one sweep into ``final_dir`` (atomically), or reuse it when its fingerprint is unchanged."""
    cfg = spec.proxies
    fingerprint = _sweep_fingerprint(spec, bins, sweep)
    meta_path = final_dir / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") == fingerprint:
        context.log.info(f"sweep {sweep.name}: inputs unchanged, reusing {final_dir}")
        return pl.read_parquet(final_dir / "results.parquet"), {**json.loads(meta_path.read_text()), "reused": True}
    tmp = _tmp_dir(final_dir)
    meta = {"sweep": to_plain(sweep), "domains": bins.domains, "targets": sorted(bins.targets),
            "prior": bins.prior().tolist(), "config": to_plain(cfg), "enabled": cfg.enabled,
            "tokenizer_sha256": bins.meta["tokenizer_sha256"], "fingerprint": fingerprint}
    if cfg.enabled:
        mixtures, sampler = sample_sweep_mixtures(bins.prior(), sweep.n_mixtures,
                                                  seed=spec.seed_for(f"proxy_runs/{sweep.name}"),
                                                  temperature=sweep.temperature, min_strength=sweep.min_strength,
                                                  max_strength=sweep.max_strength)
        all_mixtures = np.concatenate([mixtures] * len(sweep.seeds))
        seeds = [s for s in sweep.seeds for _ in range(len(mixtures))]
        run_ids = [f"{sweep.name}-{i:03d}-s{s}" for s in sweep.seeds for i in range(len(mixtures))]
        started = time.perf_counter()
        results = train_population(bins, all_mixtures, cfg, seeds, run_ids=run_ids, progress=context.log.info)
        meta |= {"sampler": sampler, "train_seconds": round(time.perf_counter() - started, 1)}
    else:
        results = pl.DataFrame(schema={"run_id": pl.String, "member": pl.Int64, "seed": pl.Int64, "step": pl.Int64})
    results.write_parquet(tmp / "results.parquet")
    write_json(tmp / "meta.json", meta)
    replace_dir(tmp, final_dir)
    return results, {**meta, "reused": False}


def _skip(out: Path, context, *, empty_scores: bool = False) -> dg.MaterializeResult:
    """Materialize a skipped asset cheaply: a note saying why, no model, an empty scores table."""
    reason = "no configured step reads it (only pruning.method seta reads the difficulty scores)"
    tmp = _tmp_dir(out)
    write_json(tmp / "skipped.json", {"skipped": reason})
    if empty_scores:
        pl.DataFrame(schema=SCORE_COLUMNS).write_parquet(tmp / "scores.parquet")
    replace_dir(tmp, out)  # no stale model or scores of an earlier configuration stay behind
    context.log.info(f"skipped: {reason}")
    return dg.MaterializeResult(metadata={"skipped": reason, "path": dg.MetadataValue.path(str(out))})


def _loss_curves(base: Path, sweeps: list[str]) -> bytes | None:
    """Mean validation loss against training step, one line per proxy (the first 24 of each sweep)."""
    curves = {}
    for name in sweeps:
        table = pl.read_parquet(base / name / "results.parquet")
        if not table.height or "loss_val_mean" not in table.columns:
            continue
        for run_id in table["run_id"].unique(maintain_order=True).to_list()[:24]:
            run = table.filter(pl.col("run_id") == run_id).sort("step")
            curves[run_id] = (run["step"].to_list(), run["loss_val_mean"].to_list())
    if not curves:
        return None
    return plots.loss_curves(curves, title="Proxy validation loss (mean over domains)", max_legend=8)


def _scores_read_by(spec) -> str | None:
    """The configured step that reads the difficulty scores (and so the reference proxy), or None."""
    return scores_read_by(spec)


def roundtrip_check(root: DataRoot, stage: str, domains: list[str], tokenizer_path: Path) -> dg.AssetCheckResult:
    tok = load_tokenizer(tokenizer_path)
    texts = [t for d in domains for t in root.scan(stage, [d]).select("text").head(20).collect()["text"].to_list()]
    bad = [t[:60] for t in texts if tok.decode(tok.encode(t, add_special_tokens=False).ids, skip_special_tokens=False) != t]
    return dg.AssetCheckResult(check_name="roundtrip", passed=not bad, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"documents_checked": len(texts), "mismatches": len(bad),
                                         "first_mismatch": bad[0] if bad else "none"})


def bins_check(path: Path) -> dg.AssetCheckResult:
    return check_result(check_split_and_sizes(path))


def build_stage(ctx: BuildContext) -> StageDefinitions:
    @dg.asset(
        name="tokenizer", deps=["curated_documents"], group_name="proxies", kinds={"tokenizers"},
        description="Byte-level BPE trained offline on the curated pool (or the user's tokenizer.json), with sha256.",
        check_specs=[dg.AssetCheckSpec("roundtrip", asset="tokenizer", blocking=True,
                                       description="curated documents decode back to themselves exactly")],
        code_version=ctx.code_version("tokenizer-2", "tokenizer"),
    )
    def tokenizer(context: dg.AssetExecutionContext, curamix: CuramixResource):
        spec = curamix.load_spec()
        root = DataRoot(spec.data_root)
        cfg = spec.tokenizer
        tmp = _tmp_dir(root.root / "tokenizer")
        started = time.perf_counter()
        if cfg.path:
            user = Path(cfg.path) if Path(cfg.path).is_absolute() else spec.path.parent / cfg.path
            shutil.copyfile(user, tmp / "tokenizer.json")
            origin = {"source": "user", "path": str(user)}
        else:
            texts = sample_training_texts(root, "curated", spec.domains, max_bytes=cfg.max_training_bytes,
                                          seed=spec.seed_for("tokenizer"))
            tok = train_tokenizer(texts, vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency)
            save_tokenizer(tok, tmp / "tokenizer.json")
            origin = {"source": "trained", "stage": "curated", "max_training_bytes": cfg.max_training_bytes}
        tok = load_tokenizer(tmp / "tokenizer.json")
        sha = file_sha256(tmp / "tokenizer.json")
        meta = {"sha256": sha, "vocab_size": tok.get_vocab_size(), "eot_id": eot_id(tok), **origin}
        # The same end-of-document token emission ends documents with (output.eos_token or the first known).
        write_loader_files(tmp, eos_token=find_eos(tok, spec.output.eos_token)[0],
                           model_max_length=spec.output.sequence_length)
        write_json(tmp / "meta.json", meta)
        replace_dir(tmp, root.root / "tokenizer")
        context.log.info(f"tokenizer {sha[:12]} ({meta['vocab_size']} tokens) in {time.perf_counter() - started:.1f}s")
        yield dg.MaterializeResult(metadata={**meta, "path": dg.MetadataValue.path(str(root.root / "tokenizer"))},
                                   data_version=dg.DataVersion(sha[:16]))
        yield roundtrip_check(root, "curated", spec.domains, root.root / "tokenizer" / "tokenizer.json")

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
        spec = curamix.load_spec()
        root = DataRoot(spec.data_root)
        cfg = spec.proxies
        if not _scores_read_by(spec):
            return _skip(root.root / "reference_proxy", context)
        tmp = _tmp_dir(root.root / "reference_proxy")
        tok_dir = root.root / "tokenizer"
        tok = load_tokenizer(tok_dir / "tokenizer.json")
        meta = build_bins(root, "curated", spec.domains, tmp / "bins", tokenizer=tok,
                          tokenizer_sha256=file_sha256(tok_dir / "tokenizer.json"),
                          validation_fraction=cfg.validation_fraction, min_validation_docs=cfg.min_validation_docs,
                          max_train_tokens=cfg.max_train_tokens_per_domain, seed=spec.seed_for("reference_proxy"),
                          progress=context.log.info, execution=spec.execution)
        extra = {"enabled": cfg.enabled, "tokenizer_sha256": meta["tokenizer_sha256"]}
        if cfg.enabled:
            bins = Bins.open(tmp / "bins")
            prior = bins.prior()
            results = train_population(
                bins, prior[None, :], cfg, spec.seed_for("reference_proxy"), run_ids=["reference"],
                steps=cfg.reference_steps or cfg.train.steps, progress=context.log.info,
                keep=lambda i, model, j: save_proxy(tmp, model, j, extra=extra | {"mixture": dict(zip(bins.domains, prior.tolist()))}))
            results.write_parquet(tmp / "results.parquet")
            final = results.filter(pl.col("step") == pl.col("step").max()).to_dicts()[0]
        else:
            write_json(tmp / "proxy.json", extra)
            final = {}
        replace_dir(tmp, root.root / "reference_proxy")
        return dg.MaterializeResult(metadata={"enabled": cfg.enabled, "final": dg.MetadataValue.json(final),
                                              "path": dg.MetadataValue.path(str(root.root / "reference_proxy"))})

    @dg.asset(
        name="difficulty_scores", deps=["reference_proxy", "tokenizer", "curated_documents"], group_name="proxies",
        kinds={"parquet", "pytorch"},
        description="Mean token loss of every curated document under the reference proxy (SeTa's difficulty score). "
        "Skipped (an empty table) unless a configured step reads it (pruning.method seta).",
        code_version=ctx.code_version(f"difficulty-scores-3{skipped}", "proxies"),
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
        spec = curamix.load_spec()
        root = DataRoot(spec.data_root)
        cfg = spec.proxies
        targets = [(t.name, read_target_texts(t, spec.path.parent)) for t in cfg.targets]
        meta = build_bins(root, "pruned", spec.domains, root.layout.token_bins,
                          tokenizer=load_tokenizer(root.layout.tokenizer_json),
                          tokenizer_sha256=file_sha256(root.layout.tokenizer_json),
                          validation_fraction=cfg.validation_fraction, min_validation_docs=cfg.min_validation_docs,
                          max_train_tokens=cfg.max_train_tokens_per_domain, seed=spec.seed_for("token_bins"),
                          targets=targets, progress=context.log.info, execution=spec.execution)
        yield from materialize(bins_outcome(meta, root.layout.token_bins))

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
        spec = curamix.load_spec()
        root = DataRoot(spec.data_root)
        cfg = spec.proxies
        bins = Bins.open(root.root / "token_bins")
        base = root.root / "proxy_runs"
        base.mkdir(parents=True, exist_ok=True)
        wanted = {s.name for s in cfg.sweeps}
        for stale in base.iterdir():
            if stale.is_dir() and stale.name not in wanted and ".tmp-" not in stale.name:
                shutil.rmtree(stale)  # a sweep removed from the spec must not feed the mixers
        summary, finals = {}, []
        for sweep in cfg.sweeps:
            results, meta = _run_sweep(context, spec, bins, sweep, base / sweep.name)
            final = results.filter(pl.col("step") == pl.col("step").max()) if results.height else results
            finals.append(final)
            summary[sweep.name] = {"members": final.height, "reused": meta["reused"],
                                   "train_seconds": meta.get("train_seconds", 0.0), "sampler": meta.get("sampler", "disabled")}
        final = pl.concat(finals, how="diagonal_relaxed") if finals else pl.DataFrame()
        losses = [c for c in final.columns if c.startswith("loss_")]
        curves = _loss_curves(base, [s.name for s in cfg.sweeps])
        yield dg.MaterializeResult(metadata={
            **({"loss_curves": image_metadata(curves, alt="proxy validation loss curves",
                                              save_to=base / "loss_curves.png")} if curves else {}),
            "sweeps": dg.MetadataValue.json(summary),
            "members": final.height,
            "loss_spread": dg.MetadataValue.json({c: [round(float(final[c].min()), 3), round(float(final[c].max()), 3)]
                                                  for c in losses} if final.height else {}),
            "path": dg.MetadataValue.path(str(base))})
        # A domain without held-out documents (a single-document domain) has no validation loss to check.
        checked = [f"loss_{d}" for d in bins.domains if len(bins.val[d]) > 1] + [f"loss_target_{t}" for t in bins.targets]
        not_finite = [c for c in checked if c in final.columns and not np.isfinite(final[c].to_numpy()).all()]
        yield dg.AssetCheckResult(check_name="finite_losses", passed=not not_finite, severity=dg.AssetCheckSeverity.ERROR,
                                  metadata={"not_finite": ", ".join(not_finite) or "none"})

    return StageDefinitions(assets=[tokenizer, reference_proxy, difficulty_scores, token_bins, proxy_runs])


__all__ = ["build_stage"]
